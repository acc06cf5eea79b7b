package wire

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Benchmarks of the hot frames: the hand-written codecs against the msgpack
// library's reflection on the same struct (the reason hot.go exists), and
// decoding that aliases the buffer against decoding into owned memory.

var (
	benchBody    = bytes.Repeat([]byte("x"), 64)
	benchSend    = Send{ID: 1700000000000000001, Target: ToUser(4242), QoS: 1, Body: benchBody}
	benchDeliver = Deliver{MsgID: 88123456789, From: 17, FromName: "alice", Target: ToGroup("ops-team"),
		Body: benchBody, Time: 1700000000123, QoS: 1}
	// benchServerDeliver is what bench/native.sh's fan-in subscriber gets:
	// a server message id (its time is the message's), a native sender
	// named as cim bench names its clients, a topic.
	benchServerDeliver = Deliver{MsgID: goldenID, From: 5, FromName: "cb1234abcd-p3", Target: ToTopic("bench/fanin"),
		Body: benchBody, Time: MsgIDTime(goldenID)}
)

func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name string
		body Body
	}{{"Send", &benchSend}, {"Deliver", &benchDeliver}, {"ServerDeliver", &benchServerDeliver}} {
		b.Run(c.name+"/hand", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 256)
			for i := 0; i < b.N; i++ {
				buf, _ = Append(buf[:0], c.body)
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(c.name+"/msgpack", func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 256)
			for i := 0; i < b.N; i++ {
				buf, _ = appendReflect(buf[:0], c.body)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct {
		name string
		body Body
	}{{"Send", &benchSend}, {"Deliver", &benchDeliver}, {"ServerDeliver", &benchServerDeliver}} {
		frame, _ := Append(nil, c.body)
		b.Run(c.name+"/hand", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			var f Frame
			for i := 0; i < b.N; i++ {
				if _, err := Decode(frame, &f, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/hand+detach", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			var f Frame
			for i := 0; i < b.N; i++ {
				if _, err := Decode(frame, &f, 0); err != nil {
					b.Fatal(err)
				}
				f.Detach()
			}
		})
		b.Run(c.name+"/msgpack", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			body := frame[2:] // one-byte prefix, type
			for i := 0; i < b.N; i++ {
				var err error
				switch c.body.(type) {
				case *Send:
					var s Send
					err = msgpack.Unmarshal(body, &s)
				case *Deliver:
					var d Deliver
					err = msgpack.Unmarshal(body, &d)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeLogin(b *testing.B) {
	frame, _ := Append(nil, &Login{User: 42, Name: "alice", Password: "secret", Version: "cim-go/0.1", Keepalive: 30})
	b.ReportAllocs()
	var f Frame
	for i := 0; i < b.N; i++ {
		if _, err := Decode(frame, &f, 0); err != nil {
			b.Fatal(err)
		}
	}
}
