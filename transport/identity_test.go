package transport_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rookery-ml/rookery/transport"
)

// TestLoadIdentity: the first load creates a key file readable by its
// owner only, later loads return the same key, and a file that is not a
// key is an ErrIdentityFile.
func TestLoadIdentity(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "provider.key")
	k1, created, err := transport.LoadIdentity(file)
	if err != nil || !created {
		t.Fatalf("first load: created %v, %v", created, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	k2, created, err := transport.LoadIdentity(file)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("second load: created %v, same %v, %v", created, k1.Equal(k2), err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := transport.LoadIdentity(bad); !errors.Is(err, transport.ErrIdentityFile) {
		t.Fatalf("a bad file: %v, want ErrIdentityFile", err)
	}
}
