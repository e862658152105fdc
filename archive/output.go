package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// checkOutput refuses, before anything is read or written, an output a
// save cannot replace whole: for a directory format, anything at path but
// an empty directory (rename(2) replaces only that); for an archive, a
// directory. Its parent must exist: the temporary file or directory is
// made there, so the rename into place stays on one file system.
func checkOutput(path string, isDir bool) error {
	if path == "" {
		return errors.New("no output (-o)")
	}
	if path == "-" {
		if isDir {
			return errors.New("-o -: a directory format cannot be written to stdout")
		}
		return nil
	}
	parent := filepath.Dir(path)
	if st, err := os.Stat(parent); err != nil {
		return fmt.Errorf("-o %s: %w", path, err)
	} else if !st.IsDir() {
		return fmt.Errorf("-o %s: %s is not a directory", path, parent)
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("-o %s: %w", path, err)
	case isDir && !st.IsDir():
		return fmt.Errorf("-o %s: exists and is not a directory", path)
	case isDir:
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("-o %s: %w", path, err)
		}
		if len(entries) > 0 {
			return fmt.Errorf("-o %s: the directory exists and is not empty", path)
		}
	case st.IsDir():
		return fmt.Errorf("-o %s: is a directory (this format writes a file)", path)
	}
	return nil
}

// writeFile runs write on a temporary file next to path and renames it to
// path once write succeeded and the file is synced; otherwise it removes
// the temporary file, and path is as it was. Path "-" is stdout, written
// as a stream.
func writeFile(path string, stdout io.Writer, write func(io.Writer) error) (err error) {
	if path == "-" {
		bw := bufio.NewWriterSize(stdout, copyBuffer)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".save-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, copyBuffer)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := syncClose(f, nil); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeDir runs write on a temporary directory next to path and renames
// it to path once write succeeded; otherwise it removes the temporary
// directory, and path is as it was.
func writeDir(path string, write func(dir string) error) (err error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+".save-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := write(tmp); err != nil {
		return err
	}
	if err := syncTree(tmp); err != nil {
		return err
	}
	// rename(2) replaces an empty directory; os.Rename refuses to.
	if err := unix.Rename(tmp, path); err != nil {
		return fmt.Errorf("-o %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncTree syncs every directory under dir, dir included, so the entries
// of the output are on disk before it is renamed into place (the files'
// bytes were synced as each was written).
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(p)
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return syncClose(d, nil)
}
