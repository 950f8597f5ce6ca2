package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestLimitsWithDefaults(t *testing.T) {
	tests := []struct {
		in, want Limits
	}{
		{Limits{}, Limits{MaxKeyBytes: DefaultMaxKeyBytes, MaxValueBytes: DefaultMaxValueBytes}},
		{Limits{MaxKeyBytes: 10}, Limits{MaxKeyBytes: 10, MaxValueBytes: DefaultMaxValueBytes}},
		{Limits{MaxValueBytes: 20}, Limits{MaxKeyBytes: DefaultMaxKeyBytes, MaxValueBytes: 20}},
		{Limits{MaxKeyBytes: 1, MaxValueBytes: 2}, Limits{MaxKeyBytes: 1, MaxValueBytes: 2}},
		// Negative values are not defaulted: Validate reports them.
		{Limits{MaxKeyBytes: -1, MaxValueBytes: -2}, Limits{MaxKeyBytes: -1, MaxValueBytes: -2}},
	}
	for _, tt := range tests {
		in := tt.in
		if got := tt.in.WithDefaults(); got != tt.want {
			t.Errorf("%+v.WithDefaults() = %+v, want %+v", tt.in, got, tt.want)
		}
		if in != tt.in {
			t.Errorf("WithDefaults modified its receiver")
		}
	}
	if DefaultMaxKeyBytes != 4096 || DefaultMaxValueBytes != 1<<20 {
		t.Errorf("defaults = %d, %d; want 4096, 1048576", DefaultMaxKeyBytes, DefaultMaxValueBytes)
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name     string
		l        Limits
		wantErrs []string // substrings that must all appear; nil means no error
		notWant  []string
	}{
		{"zero", Limits{}, nil, nil},
		{"defaults", Limits{}.WithDefaults(), nil, nil},
		{"positive", Limits{MaxKeyBytes: 1, MaxValueBytes: 1}, nil, nil},
		{"negative key", Limits{MaxKeyBytes: -1, MaxValueBytes: 5},
			[]string{"MaxKeyBytes is -1"}, []string{"MaxValueBytes"}},
		{"negative value", Limits{MaxKeyBytes: 5, MaxValueBytes: -7},
			[]string{"MaxValueBytes is -7"}, []string{"MaxKeyBytes"}},
		{"both negative", Limits{MaxKeyBytes: -3, MaxValueBytes: -4},
			[]string{"MaxKeyBytes is -3", "MaxValueBytes is -4"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			if tt.wantErrs == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErrs)
			}
			msg := err.Error()
			for _, want := range tt.wantErrs {
				if !strings.Contains(msg, want) {
					t.Errorf("Validate() = %q, does not contain %q", msg, want)
				}
			}
			for _, no := range tt.notWant {
				if strings.Contains(msg, no) {
					t.Errorf("Validate() = %q, should not mention %q", msg, no)
				}
			}
			// All problems are reported as separate joined errors.
			if j, ok := err.(interface{ Unwrap() []error }); !ok {
				t.Errorf("Validate() error %T is not a joined error", err)
			} else if got := len(j.Unwrap()); got != len(tt.wantErrs) {
				t.Errorf("Validate() joined %d errors, want %d", got, len(tt.wantErrs))
			}
		})
	}
}

func TestLimitsCheckKey(t *testing.T) {
	l := Limits{MaxKeyBytes: 8, MaxValueBytes: 16}
	tests := []struct {
		name    string
		key     []byte
		wantErr error
		size    int
	}{
		{"nil", nil, ErrKeyEmpty, 0},
		{"empty", []byte{}, ErrKeyEmpty, 0},
		{"one byte", []byte("a"), nil, 1},
		{"zero byte key", []byte{0}, nil, 1},
		{"limit minus one", bytes.Repeat([]byte("k"), 7), nil, 7},
		{"at limit", bytes.Repeat([]byte("k"), 8), nil, 8},
		{"limit plus one", bytes.Repeat([]byte("k"), 9), ErrKeyTooLarge, 9},
		{"far over", bytes.Repeat([]byte("k"), 1000), ErrKeyTooLarge, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.CheckKey(tt.key)
			checkLimitErr(t, err, tt.wantErr, "key", tt.size, l.MaxKeyBytes)
			if tt.wantErr == ErrKeyEmpty && err != nil && errors.Is(err, ErrKeyTooLarge) {
				t.Errorf("empty key reported as too large")
			}
		})
	}
}

func TestLimitsCheckKeyDefaults(t *testing.T) {
	l := Limits{}.WithDefaults()
	if err := l.CheckKey(make([]byte, DefaultMaxKeyBytes)); err != nil {
		t.Errorf("CheckKey(default max) = %v, want nil", err)
	}
	err := l.CheckKey(make([]byte, DefaultMaxKeyBytes+1))
	checkLimitErr(t, err, ErrKeyTooLarge, "key", DefaultMaxKeyBytes+1, DefaultMaxKeyBytes)
}

func TestLimitsCheckValue(t *testing.T) {
	l := Limits{MaxKeyBytes: 8, MaxValueBytes: 16}
	tests := []struct {
		name    string
		value   []byte
		wantErr error
		size    int
	}{
		{"nil", nil, nil, 0},
		{"empty", []byte{}, nil, 0},
		{"small", []byte("v"), nil, 1},
		{"at limit", bytes.Repeat([]byte("v"), 16), nil, 16},
		{"limit plus one", bytes.Repeat([]byte("v"), 17), ErrValueTooLarge, 17},
		{"far over", bytes.Repeat([]byte("v"), 4096), ErrValueTooLarge, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLimitErr(t, l.CheckValue(tt.value), tt.wantErr, "value", tt.size, l.MaxValueBytes)
		})
	}

	d := Limits{}.WithDefaults()
	if err := d.CheckValue(make([]byte, DefaultMaxValueBytes)); err != nil {
		t.Errorf("CheckValue(default max) = %v, want nil", err)
	}
	checkLimitErr(t, d.CheckValue(make([]byte, DefaultMaxValueBytes+1)),
		ErrValueTooLarge, "value", DefaultMaxValueBytes+1, DefaultMaxValueBytes)
}

// checkLimitErr checks err against the expected sentinel; for the too-large
// errors it also checks the LimitError fields and that the message names both
// sizes.
func checkLimitErr(t *testing.T, err, want error, what string, size, limit int) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("error = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	if want != ErrKeyTooLarge && want != ErrValueTooLarge {
		return
	}
	for _, other := range []error{ErrKeyEmpty, ErrKeyTooLarge, ErrValueTooLarge, ErrNoOrigin, ErrTombstoneData} {
		if other != want && errors.Is(err, other) {
			t.Errorf("error %v also matches %v", err, other)
		}
	}
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T) is not a *LimitError", err, err)
	}
	if le.Err != want || le.What != what || le.Size != size || le.Limit != limit {
		t.Errorf("LimitError = %+v, want {Err: %v What: %s Size: %d Limit: %d}", *le, want, what, size, limit)
	}
	msg := err.Error()
	for _, s := range []string{want.Error(), fmt.Sprintf("%s is %d bytes", what, size), fmt.Sprintf("limit is %d", limit)} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not contain %q", msg, s)
		}
	}
}

func TestLimitsCheckEntry(t *testing.T) {
	l := Limits{MaxKeyBytes: 8, MaxValueBytes: 16}
	longKey := bytes.Repeat([]byte("K"), 100)
	tests := []struct {
		name    string
		e       Entry
		wantErr error
		wantMsg []string
	}{
		{"good value", Entry{Key: []byte("k"), Value: []byte("v"), HLC: 1, Origin: []byte("n1")}, nil, nil},
		{"good empty value", Entry{Key: []byte("k"), Origin: []byte("n1")}, nil, nil},
		{"good tombstone", Entry{Key: []byte("k"), HLC: 1, Origin: []byte("n1"), Tombstone: true}, nil, nil},
		{"good tombstone empty non-nil value", Entry{Key: []byte("k"), Value: []byte{}, Origin: []byte("n1"), Tombstone: true}, nil, nil},
		{"good at limits", Entry{Key: bytes.Repeat([]byte("k"), 8), Value: bytes.Repeat([]byte("v"), 16), Origin: []byte("n")}, nil, nil},
		{"empty key", Entry{Value: []byte("v"), Origin: []byte("n1")}, ErrKeyEmpty, nil},
		{"key too large", Entry{Key: bytes.Repeat([]byte("k"), 9), Origin: []byte("n1")}, ErrKeyTooLarge,
			[]string{"is 9 bytes", "limit is 8"}},
		{"value too large", Entry{Key: []byte("mykey"), Value: bytes.Repeat([]byte("v"), 17), Origin: []byte("n1")}, ErrValueTooLarge,
			[]string{`"mykey"`, "is 17 bytes", "limit is 16"}},
		{"no origin nil", Entry{Key: []byte("mykey"), Value: []byte("v")}, ErrNoOrigin, []string{`"mykey"`}},
		{"no origin empty", Entry{Key: []byte("mykey"), Value: []byte("v"), Origin: []byte{}}, ErrNoOrigin, []string{`"mykey"`}},
		{"tombstone with value", Entry{Key: []byte("mykey"), Value: []byte("v"), Origin: []byte("n1"), Tombstone: true}, ErrTombstoneData,
			[]string{`"mykey"`}},
		// Order of checks: key first, then value, then origin, then tombstone.
		{"empty key and no origin", Entry{}, ErrKeyEmpty, nil},
		{"value too large and no origin", Entry{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 17)}, ErrValueTooLarge, nil},
		{"no origin and tombstone data", Entry{Key: []byte("k"), Value: []byte("v"), Tombstone: true}, ErrNoOrigin, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.CheckEntry(&tt.e)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckEntry = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckEntry = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("CheckEntry = %q, does not contain %q", err, s)
				}
			}
		})
	}

	// A long key is truncated to 64 bytes in the message.
	l2 := Limits{MaxKeyBytes: 1000, MaxValueBytes: 1}
	err := l2.CheckEntry(&Entry{Key: longKey, Origin: []byte("n"), Value: []byte("vv")})
	if !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("CheckEntry(long key, big value) = %v, want ErrValueTooLarge", err)
	}
	if want := fmt.Sprintf("%q", longKey[:64]); !strings.Contains(err.Error(), want) {
		t.Errorf("CheckEntry = %q, want the key truncated to 64 bytes", err)
	}
	if strings.Contains(err.Error(), string(longKey[:65])) {
		t.Errorf("CheckEntry = %q, key not truncated", err)
	}
	var le *LimitError
	if !errors.As(err, &le) || le.Size != 2 || le.Limit != 1 {
		t.Errorf("CheckEntry error does not carry a LimitError{Size: 2, Limit: 1}: %v", err)
	}
}

func TestLimitErrorUnwrap(t *testing.T) {
	e := &LimitError{Err: ErrKeyTooLarge, What: "key", Size: 5, Limit: 4}
	if e.Unwrap() != ErrKeyTooLarge {
		t.Errorf("Unwrap = %v, want ErrKeyTooLarge", e.Unwrap())
	}
	if got, want := e.Error(), "crdt: key too large: key is 5 bytes; the limit is 4"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("outer: %w", e)
	if !errors.Is(wrapped, ErrKeyTooLarge) || errors.Is(wrapped, ErrValueTooLarge) {
		t.Errorf("errors.Is through wrapping broken for %v", wrapped)
	}
}
