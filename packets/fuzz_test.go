package packets

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// checkDecode is the property every fuzz target checks: Decode never panics;
// a failure is a *Error matching exactly one sentinel; a success re-encodes
// to exactly the input, because every packet has one encoding.
func checkDecode(t *testing.T, in []byte) {
	p, err := Decode(in)
	if err != nil {
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("error %T is not a *Error: %v", err, err)
		}
		n := 0
		for _, s := range []error{ErrTruncated, ErrTrailingBytes, ErrUnknownType, ErrTooLarge, ErrInvalidValue} {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q matches %d sentinels", err, n)
		}
		return
	}
	if p.Type() != Type(in[0]) {
		t.Fatalf("decoded %s from type byte 0x%02x", p.Type(), in[0])
	}
	if out := Encode(p); !bytes.Equal(out, in) {
		t.Fatalf("re-encoding differs:\n in  %x\n out %x", in, out)
	}
}

// fuzzType runs the property on packets of one type: the fuzzer mutates the
// payload, the type byte stays fixed so each decoder gets the whole budget.
func fuzzType(f *testing.F, typ Type) {
	for _, p := range samples() {
		if p.Type() == typ {
			f.Add(Encode(p)[1:])
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkDecode(t, append([]byte{byte(typ)}, payload...))
	})
}

func FuzzDecodeHello(f *testing.F)           { fuzzType(f, TypeHello) }
func FuzzDecodeWelcome(f *testing.F)         { fuzzType(f, TypeWelcome) }
func FuzzDecodeBind(f *testing.F)            { fuzzType(f, TypeBind) }
func FuzzDecodeLost(f *testing.F)            { fuzzType(f, TypeLost) }
func FuzzDecodeResourceRequest(f *testing.F) { fuzzType(f, TypeResourceRequest) }
func FuzzDecodeResourceCancel(f *testing.F)  { fuzzType(f, TypeResourceCancel) }
func FuzzDecodeInitResSend(f *testing.F)     { fuzzType(f, TypeInitResSend) }
func FuzzDecodeChunkSend(f *testing.F)       { fuzzType(f, TypeChunkSend) }
func FuzzDecodeResourceError(f *testing.F)   { fuzzType(f, TypeResourceError) }
func FuzzDecodeDisconnect(f *testing.F)      { fuzzType(f, TypeDisconnect) }
func FuzzDecodeMove(f *testing.F)            { fuzzType(f, TypeMove) }
func FuzzDecodeBindsDone(f *testing.F)       { fuzzType(f, TypeBindsDone) }
func FuzzDecodeManifest(f *testing.F)        { fuzzType(f, TypeManifest) }
func FuzzDecodeMirrors(f *testing.F)         { fuzzType(f, TypeMirrors) }
func FuzzDecodeMirrorReport(f *testing.F)    { fuzzType(f, TypeMirrorReport) }

// FuzzDecode lets the fuzzer choose the type byte too.
func FuzzDecode(f *testing.F) {
	for _, p := range samples() {
		f.Add(Encode(p))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, in []byte) { checkDecode(t, in) })
}

// TestWriteFuzzSeeds regenerates testdata/fuzz seeds from samples() when
// UPDATE_FUZZ_SEEDS=1; otherwise it checks that every target has seeds, so a
// new packet type cannot be added without them.
func TestWriteFuzzSeeds(t *testing.T) {
	targets := map[Type]string{}
	for typ, name := range typeNames {
		targets[typ] = "FuzzDecode" + name
	}
	for _, p := range samples() {
		dir := filepath.Join("testdata", "fuzz", targets[p.Type()])
		if os.Getenv("UPDATE_FUZZ_SEEDS") == "1" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			payload := Encode(p)[1:]
			name := filepath.Join(dir, fmt.Sprintf("seed-%x", payload[:min(len(payload), 8)]))
			if err := os.WriteFile(name, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", payload), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range targets {
		ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(ents) == 0 {
			t.Errorf("no seeds in testdata/fuzz/%s (run with UPDATE_FUZZ_SEEDS=1): %v", name, err)
		}
	}
}
