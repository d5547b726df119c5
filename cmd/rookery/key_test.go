package main

import (
	"os"
	"testing"
)

// TestMain keeps the providers the tests start from writing identity
// keys into the user's configuration directory, and the seed nodes'
// ledgers into the user's data directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rookery-config")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir)
	os.Setenv("HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
