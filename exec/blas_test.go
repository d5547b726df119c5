package exec

import "testing"

func TestBLASName(t *testing.T) {
	if BLASName() == "" {
		t.Fatal("BLASName is empty")
	}
}
