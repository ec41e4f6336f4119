package cdc

// Cut returns the length of the first chunk of data, treating data as the
// rest of the stream if it is shorter than p.Max (in-memory use). It returns
// 0 only for empty data. Invalid Params are a programmer's error, and Cut
// panics on them: validate configured Params once, at load.
func Cut(data []byte, p Params) int {
	if err := p.Validate(); err != nil {
		panic("cdc.Cut: " + err.Error())
	}
	maskS, maskL := maskPair(p.Avg, level)
	n, _ := cut(data, p.Min, p.Avg, p.Max, maskS, maskL, &gear, gearLS)
	return n
}

// cut returns the length of the first chunk of data and the gear hash where
// it was cut (the fingerprint the published vectors list).
//
// It is FastCDC 2020 as in fastcdc-rs's cut_gear, with one change below.
// The paper's quirk is kept: the byte whose hash matched starts the next
// chunk rather than ending this one. Bytes are taken two at a time, the
// first through the table shifted left, which saves a shift per pair: after
// the first byte the loop holds twice the 2016 loop's hash, so it tests the
// mask shifted left too (the masks' top bit is clear). The cut points are
// those of the byte-at-a-time 2016 loop, except that an odd last byte before
// Max is never tested.
//
// The change: fastcdc-rs starts at Min rounded down to even, which can cut a
// chunk one byte shorter than an odd Min. This starts at Min rounded up, the
// same for every even Min, so the published vectors are unaffected.
func cut(data []byte, minLen, avgLen, maxLen int, maskS, maskL uint64, g, gls *[256]uint64) (int, uint64) {
	n := len(data)
	if n <= minLen {
		return n, 0
	}
	center := avgLen
	if n > maxLen {
		n = maxLen
	} else if n < center {
		center = n
	}
	maskSLS, maskLLS := maskS<<1, maskL<<1
	i := (minLen + 1) &^ 1
	var h uint64

	// The strict mask until center, the loose one after it.
	s := data[:center&^1]
	for ; i+1 < len(s); i += 2 {
		hs := h << 2
		a := gls[s[i]]
		if (hs+a)&maskSLS == 0 {
			return i, hs + a
		}
		h = hs + a + g[s[i+1]]
		if h&maskS == 0 {
			return i + 1, h
		}
	}
	s = data[:n&^1]
	for ; i+1 < len(s); i += 2 {
		hs := h << 2
		a := gls[s[i]]
		if (hs+a)&maskLLS == 0 {
			return i, hs + a
		}
		h = hs + a + g[s[i+1]]
		if h&maskL == 0 {
			return i + 1, h
		}
	}
	return n, h
}
