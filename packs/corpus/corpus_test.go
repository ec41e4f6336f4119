package corpus

import "testing"

func TestShape(t *testing.T) {
	st, err := Generate(t.TempDir(), Spec{})
	if err != nil {
		t.Fatal(err)
	}
	pct := func(n int) float64 { return 100 * float64(n) / float64(st.Files) }
	checks := []struct {
		name   string
		got    float64
		lo, hi float64
	}{
		{"files", float64(st.Files), 2500, 2700},
		{"MiB", float64(st.Bytes) / (1 << 20), 11, 12},
		{"% ≤ 1 KiB", pct(st.UpTo1KiB), 69, 73},
		{"% ≤ 16 KiB", pct(st.UpTo16KiB), 96, 98},
		{"median", float64(st.Median), 350, 450},
		{"p99", float64(st.P99), 50_000, 70_000},
		{"max", float64(st.Max), 450_000, 520_000},
		{"% textures", pct(st.Textures), 83, 85},
		{"% sounds", pct(st.Sounds), 6, 8},
		{"% models", pct(st.Models), 8, 10},
	}
	for _, c := range checks {
		if c.got < c.lo || c.got > c.hi {
			t.Errorf("%s = %.1f, want %.0f..%.0f", c.name, c.got, c.lo, c.hi)
		}
	}
	t.Logf("%d files, %.2f MiB, median %d B, p99 %d B, max %d B", st.Files, float64(st.Bytes)/(1<<20), st.Median, st.P99, st.Max)
}
