// Package bytesize formats byte counts for people: the status page, the
// client's progress line and its summary all say sizes the same way.
package bytesize

import "fmt"

// Format returns n in B, KiB, MiB or GiB with one decimal.
func Format(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
