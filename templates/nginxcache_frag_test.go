package templates

import "testing"

// TestCacheTemplateFragments: the caching tier's template spells no path
// segment, suffix, name or pattern of the tree either (TestTemplateFragments).
func TestCacheTemplateFragments(t *testing.T) {
	checkFragments(t, "nginx-cache.conf.tmpl", mustRead(t, nginxFiles.ReadFile, "nginx-cache.conf.tmpl"), declaredFragments())
}
