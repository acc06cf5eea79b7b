package httpapi

import (
	"bytes"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// BenchmarkWSReadStream: unmasking 1 KiB client frames into the stream.
func BenchmarkWSReadStream(b *testing.B) {
	var in bytes.Buffer
	payload := bytes.Repeat([]byte("p"), 1024)
	for range 64 {
		ws.WriteFrame(&in, ws.MaskFrame(ws.NewBinaryFrame(payload)))
	}
	buf := make([]byte, 2048)
	b.SetBytes(int64(64 * len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		c := &wsConn{Conn: discardConn{}, src: bytes.NewReader(in.Bytes())}
		for {
			if _, err := c.Read(buf); err == io.EOF {
				break
			}
		}
	}
}

// BenchmarkWSWriteUvarint: re-framing 64 native frames into messages.
func BenchmarkWSWriteUvarint(b *testing.B) {
	var stream []byte
	for range 64 {
		stream = append(stream, 100)
		stream = append(stream, bytes.Repeat([]byte("m"), 100)...)
	}
	c := &wsConn{Conn: discardConn{}, framing: FramingUvarint}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		c.Write(stream)
	}
}
