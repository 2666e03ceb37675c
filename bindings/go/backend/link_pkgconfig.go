//go:build vbpkgconfig

package backend

// Linking through pkg-config (`go build -tags vbpkgconfig`): expects a voicebackend.pc whose
// Cflags point at the directory holding voicebackend.h and whose Libs link -lvoicebackend, e.g.
//
//	prefix=/usr/local
//	Name: voicebackend
//	Description: realtime voice-agent engine (C ABI)
//	Version: 0.1.0
//	Cflags: -I${prefix}/include
//	Libs: -L${prefix}/lib -lvoicebackend

/*
#cgo pkg-config: voicebackend
*/
import "C"
