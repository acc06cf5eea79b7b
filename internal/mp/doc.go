// Package mp reads and writes the msgpack forms of the cluster's hot
// frames by hand: a forwarded publish's frame (cluster) and the broker's
// envelope inside it (broker). With vmihailenco/msgpack's reflection a
// 64-byte publish frame took ~400 ns to decode against ~160 by hand
// (cluster's BenchmarkFrameDecodePublish64), and encoding the envelope
// with it was a third of a forward. Everything else still goes through
// the library, which reads what this writes and writes what this reads.
//
// Standard library only; no I/O. Nothing here allocates except Strs.
package mp
