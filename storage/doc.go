// Package storage is cim's durable store: persistent sessions, their
// offline/in-flight queues, retained messages (and, later, accounts,
// history and delayed messages) in one Pebble database, written by one
// group-commit goroutine. It imports no other cim package.
//
// # Key layout
//
// Every key is a one-byte keyspace, a 0x00 separator and the record's
// identity. Strings in keys may not contain U+0000 (so a prefix plus 0x00
// bounds exactly one owner's records); integers are 8-byte big-endian so
// that byte order is numeric order (seq 256 sorts after 255, 65536 after
// 65535). Values are msgpack maps with short field names (records.go; the
// hot records are encoded and decoded by hand, encode.go and decode.go,
// because reflection cost more than the rest of a queued write).
//
//	a ␀ <userID u64>                    Account
//	n ␀ <userName>                      userID (name index)
//	s ␀ <clientID>                      Session: protocol, subscriptions, expiry, node
//	o ␀ <clientID> ␀ <seq u64>          Message queued for a session, in seq order
//	r ␀ <topic>                         retained Message
//	h ␀ <conversation> ␀ <seq u64>      history Message
//	d ␀ <dueUnixMs u64> ␀ <msgID u64>   delayed Message, in due order
//
//	e.g. o␀dev-7␀<00 00 00 00 00 00 01 00> is message 256 of client "dev-7";
//	its queue is the range [o␀dev-7␀, o␀dev-7␁), which DeleteSession removes
//	with one range tombstone.
//
// # Writes: the group-commit writer
//
// Event loops must never block, so they do not write. They build a Batch
// (records are msgpack-encoded right there, spreading that CPU over the
// loops) and hand it to DB.Commit, which appends it to a bounded queue and
// returns. One committer goroutine takes everything queued as a group,
// copies it into one Pebble batch, applies it with one WAL sync, and then
// calls each batch's done callback in commit order; the broker sends the
// PUBACK from there. While a group syncs, new batches gather into the next
// group, so the cost of a sync is shared by however many writes arrived
// during the previous one:
//
//	loops ── Commit ──► [pending b1 b2 b3 …] ──► committer: apply group ─ fsync ─► done(b1) done(b2) …
//	                      (ErrBusy past MaxPendingBytes)
//
// Durability Sync (default) calls done after the fsync: what was
// acknowledged survives kill -9 and power loss. Async calls done after the
// group is applied without waiting for the fsync; a crash may lose the
// unsynced tail of groups (recovery yields a prefix of them). A failed
// write (disk full, I/O error) fails every batch of its group and, because
// Pebble's commit pipeline cannot continue after a WAL error, every later
// Commit too (ErrWrite): the process should restart. (Pebble reports some
// failures on its own background goroutines, such as a MANIFEST sync
// failing during a flush, through a fatal log call; those still end the
// process, as Pebble intends.)
//
// # Queue limits and the sweeper
//
// The committer keeps an in-memory index of every queue (seq, size,
// deadline per message; rebuilt by one scan at Open) and of session
// expiry. With it, PutQueued enforces MaxQueuedPerSession and
// MaxQueuedBytesPerSession by QueueFullPolicy (drop-oldest or reject-new,
// counted in Stats), and the sweeper finds what expired without reading
// the disk: queued messages past QueueTTL or their own Expiry, and
// disconnected sessions past DisconnectedAt + ExpiryInterval (deleted with
// their queues, then reported to Options.OnSessionExpired).
//
// # Reads
//
// LoadSessions, LoadQueues, LoadQueue, LoadRetained and GetSession read
// Pebble directly. They are for startup recovery and for a session
// resuming, may do I/O, and must run off the event loops. At startup one
// LoadQueues scan is several times cheaper than a LoadQueue per session.
package storage
