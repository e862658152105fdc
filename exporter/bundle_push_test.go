package exporter

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePushTarget(t *testing.T) {
	for _, tc := range []struct {
		in, registry, prefix, err string
	}{
		{in: "docker://reg.example:5000", registry: "reg.example:5000"},
		{in: "docker://reg.example/", registry: "reg.example"},
		{in: "docker://harbor.site/mirror/team", registry: "harbor.site", prefix: "mirror/team"},
		{in: "docker://harbor.site/mirror/", registry: "harbor.site", prefix: "mirror"},
		{in: "harbor.site/mirror", err: "want docker://HOST[/PREFIX]"},
		{in: "docker://", err: "no registry host"},
		{in: "docker://Harbor Site", err: "no registry host"},
		{in: "docker://harbor.site/Mirror", err: "prefix"},
	} {
		got, err := ParsePushTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePushTarget(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.Registry != tc.registry || got.Prefix != tc.prefix {
			t.Errorf("ParsePushTarget(%q) = %+v, %v; want %s and prefix %q", tc.in, got, err, tc.registry, tc.prefix)
		}
	}
	if got := (PushTarget{Registry: "r", Prefix: "p/q"}).Repo("site/app"); got != "p/q/site/app" {
		t.Errorf("Repo under a prefix: %s", got)
	}
	if got := (PushTarget{Registry: "r"}).Repo("site/app"); got != "site/app" {
		t.Errorf("Repo without a prefix: %s", got)
	}
}

// TestDestFlagsError: the source machinery's hints name the
// destination's flags in a load into a registry, and the cause stays in
// the chain.
func TestDestFlagsError(t *testing.T) {
	cause := errors.New("x509: unknown authority")
	err := destFlagsError(registryError("reg/app@sha256:00", &plainHTTPError{url: "http://reg/v2/"}))
	if strings.Contains(err.Error(), "--src-") || !strings.Contains(err.Error(), "--dest-tls-verify=false") {
		t.Errorf("destFlagsError: %v", err)
	}
	var pe *plainHTTPError
	if !errors.As(err, &pe) {
		t.Errorf("destFlagsError lost the cause: %#v", err)
	}
	if got := destFlagsError(cause); got != cause {
		t.Errorf("destFlagsError changed an error naming no flag: %v", got)
	}
}
