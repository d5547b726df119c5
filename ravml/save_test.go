package ravml

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	ctx := context.Background()
	d := loadSplit(t, "iris")
	for name, mk := range allModels() {
		m := mk()
		if err := Save(&bytes.Buffer{}, m); !errors.Is(err, ErrNotFitted) {
			t.Errorf("%s: save before fit: got %v, want ErrNotFitted", name, err)
		}
		if err := m.Fit(ctx, d.trX, d.trY); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := m.Predict(ctx, d.teX)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var buf bytes.Buffer
		if err := Save(&buf, m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		l, err := Load(&buf)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := l.Predict(ctx, d.teX)
		if err != nil {
			t.Fatalf("%s: loaded: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: loaded model predicts differently", name)
		}
		for _, x := range []Model{m, l} {
			if c, ok := x.(interface{ Close() error }); ok {
				c.Close()
			}
		}
	}
	if _, err := Load(bytes.NewReader([]byte("not a model"))); err == nil {
		t.Error("got no error loading garbage")
	}
}
