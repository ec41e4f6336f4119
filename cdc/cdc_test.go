package cdc

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		want string // a word of the error, "" for valid
	}{
		{"Default", Default, ""},
		{"smallest", Params{64, 256, 256}, ""},
		{"largest", Params{1 << 20, 1 << 20, 1 << 20}, ""},
		{"odd Min and Max", Params{4095, 16384, 65535}, ""},
		{"zero", Params{}, "Min"},
		{"Min below 64", Params{63, 256, 1024}, "Min"},
		{"Avg below 256", Params{64, 128, 1024}, "Avg"},
		{"Avg above 1 MiB", Params{64, 2 << 20, 2 << 20}, "Avg"},
		{"Avg not a power of two", Params{64, 3000, 8000}, "power of two"},
		{"Min above Avg", Params{8192, 4096, 16384}, "Min"},
		{"Max below Avg", Params{1024, 4096, 2048}, "Max"},
		{"Max above 1 MiB", Params{1024, 4096, 1<<20 + 1}, "Max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate(%v) = %v, want nil", tt.p, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidParams) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate(%v) = %v, want ErrInvalidParams naming %q", tt.p, err, tt.want)
			}
			if _, err := New(strings.NewReader("x"), tt.p); !errors.Is(err, ErrInvalidParams) {
				t.Errorf("New with %v: error %v, want ErrInvalidParams", tt.p, err)
			}
			defer func() {
				if recover() == nil {
					t.Errorf("Cut with %v did not panic", tt.p)
				}
			}()
			Cut([]byte("x"), tt.p)
		})
	}
}

func TestParamsString(t *testing.T) {
	tests := []struct {
		p    Params
		want string
	}{
		{Default, "32KiB/128KiB/512KiB"},
		{Params{4096, 16384, 65535}, "4KiB/16KiB/65535"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestDefaultIsMeasured keeps Default among the Params that the chunk-size table in docs/benchmarks.md and
// TestMeasureCandidates measure.
func TestDefaultIsMeasured(t *testing.T) {
	if !slices.Contains(candidates, Default) {
		t.Errorf("Default %v is not among the measured candidates %v", Default, candidates)
	}
}
