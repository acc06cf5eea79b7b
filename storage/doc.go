// Package storage is cim's durable store: persistent sessions, their
// offline/in-flight queues, retained messages, accounts, groups, history,
// delayed messages and dedup records in one Pebble database, written by
// one group-commit goroutine. It imports no other cim package.
//
// # Key layout
//
// Every key is a one-byte keyspace, a 0x00 separator and the record's
// identity. Strings in keys may not contain U+0000 (so a prefix plus 0x00
// bounds exactly one owner's records) and are at most MaxNameLen bytes;
// integers are 8-byte big-endian so that byte order is numeric order (seq
// 256 sorts after 255, 65536 after 65535). Values are msgpack maps with
// short field names (records.go; the hot records are encoded and decoded
// by hand, encode.go and decode.go, because reflection cost more than the
// rest of a queued write).
//
//	s ␀ <sessionKey>                        Session: protocol, subscriptions, expiry, node
//	o ␀ <sessionKey> ␀ <seq u64>            Message queued for a session, in seq order
//	r ␀ <topic>                             retained Message
//	a ␀ <userID u64>                        Account: id, name, created, credential hash
//	n ␀ <userName>                          userID (name index; Register is idempotent)
//	g ␀ <group>                             Group: name, owner, created
//	p ␀ <group> ␀ <userID u64>              joined (unix ms): the group's members
//	u ␀ <userID u64> ␀ <group>              joined (unix ms): the user's groups
//	h ␀ <conversation> ␀ <msgID u64>        history Message, oldest first
//	c ␀ <userID u64> ␀ <conversation>       nil: the user's conversations (search index)
//	d ␀ <dueUnixMs u64> ␀ <msgID u64>       delayed Message, in due order
//	i ␀ <sender> ␀ <clientMsgID>            dedup: {server id, created}
//	j ␀ <sender>                            dedup mark: highest numeric clientMsgID recorded
//	m ␀ <name>                              store metadata: format (key layout 2), next-user
//	S ␀ …, O ␀ …                            only while migrating layout 1 (migrate.go)
//
//	sessionKey = <protocol byte> <client id or user id>   (SessionKey; 0x01 MQTT, 0x02 native)
//
//	e.g. o␀<01>dev-7␀<00 00 00 00 00 00 01 00> is message 256 queued for MQTT
//	client "dev-7"; its queue is the range [o␀<01>dev-7␀, o␀<01>dev-7␁), which
//	DeleteSession removes with one range tombstone. Native user "dev-7"
//	(o␀<02>dev-7␀…) is another session with another queue.
//
// A data dir of layout 1 (sessions keyed by the bare MQTT client id, no
// m␀format) is migrated at Open, in crash-safe chunks (migrate.go).
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
//	loops ── Commit ──► [pending b1 b2 b3 …] ──► committer: decide ─ apply ─ fsync ─► done(b1) done(b2) …
//	                      (ErrBusy past MaxPendingBytes)
//
// Durability Sync (default) calls done after the fsync: what was
// acknowledged survives kill -9 and power loss. Async calls done after the
// group is applied without waiting for the fsync; a crash may lose the
// unsynced tail of groups (recovery yields a prefix of them).
//
// Some ops are decided by the committer (decided.go): Register, CreateGroup,
// JoinGroup, LeaveGroup, SetCredential and Dedup read the store there, in
// commit order, before the group is applied, so concurrent registrations
// of one name get one id and a resend racing its original is recognised.
// Their results are filled in before done runs.
//
// # A failed write
//
// A failed write (disk full, I/O error), or a flush or compaction failing
// on one of Pebble's goroutines, fails the batches of its group with
// ErrWrite (and ErrDiskFull), and the committer then reopens the store by
// itself (health.go): Commit and the readers refuse at once with
// ErrUnavailable while it retries with backoff, Health reports it, and once
// Pebble opens again the in-memory state is rebuilt from the disk. (Pebble
// still ends the process on a failure it considers fatal on its own
// goroutines, such as a MANIFEST write failing mid-flush.)
//
// # Queue limits, and who owns which deadline
//
// The committer keeps an in-memory index of every queue (seq, size,
// deadline per message; rebuilt by one scan at Open). With it, PutQueued
// enforces MaxQueuedPerSession and MaxQueuedBytesPerSession by
// QueueFullPolicy, and says what it did: each batch's QueueEvents lists the
// messages it dropped (DropOldest) or the puts it refused (RejectNew, or a
// message over the byte cap), read in done, so the broker drops its
// in-memory copies, answers the publisher (v5 PUBACK 0x97) and logs once
// per session; Stats counts them.
//
//	deadline                         owner     how
//	session expiry (ExpiryInterval)  broker    its timing wheel; it calls DeleteSession
//	will delay                       broker
//	queued message TTL / Expiry      storage   sweeper, from the index; SweepResult.Expired → Options.OnSweep
//	history retention (HistoryTTL)   storage   retention sweep: one range delete per conversation
//	dedup records (DedupTTL)         storage   retention sweep; lookups ignore expired records meanwhile
//	delayed messages                 broker    its scheduler reads ReadDue/NextDue and deletes what it delivered
//
// # Reads
//
// LoadSessions, LoadQueues, LoadQueue, ReadQueue, LoadRetained, GetSession,
// the account, group, history, search and delayed readers read Pebble
// directly. They may do I/O and must run off the event loops. At startup
// one LoadQueues scan is several times cheaper than a LoadQueue per
// session; a queue kept only partly in memory is paged with ReadQueue.
// QueueInfo, QueueLen, QueueTail, Health and Stats read memory only.
package storage
