// Package topic validates MQTT topic names and filters and matches one
// against the other: Match for a single pair, Trie for every subscription of
// the broker at once (the publish path), Index for retained messages (the
// subscribe path). It does no I/O and knows nothing of sessions: a
// subscriber is any comparable key.
//
// # Names and filters
//
// A topic name ("cim/u/alice", "sensors/7/temp") is split by '/' into
// levels; an empty level is a level, so "/a" has two. A filter may use '+'
// for exactly one level and '#', as its last level, for any number of levels
// including none ("a/#" matches "a"). A filter starting with a wildcard does
// not match a name starting with '$', so "#" does not receive $SYS topics.
//
// A shared subscription "$share/<group>/<filter>" puts its subscribers in a
// group: each matching message goes to one member of the group, round-robin.
// The group is identified by (group, filter); the filter alone decides what
// it matches.
//
// # Trie
//
// The trie has one node per filter level. Exact levels hang in a map; '+'
// and '#' have their own pointers so matching reaches them without hashing.
// Subscribers sit on the node where their filter ends, in a slice (with a
// key index once there are many); share groups too, in a short list beside
// them, each with its members and an atomic round-robin cursor. For the
// filters
//
//	a/b, a/+, a/#, +/b, #, $SYS/#, $share/g/a/b
//
// the trie is
//
//	root
//	 ├─ "a" ─────┬─ "b" ── subs{k1}  groups: g{members [k6 k7], cursor} → ...
//	 │           ├─ +   ── subs{k2}
//	 │           └─ #   ── subs{k3}
//	 ├─ "$SYS" ──── #   ── subs{k5}
//	 ├─ + ───────── "b" ── subs{k4}
//	 └─ #  ──────────────── subs{k0}     (skipped for names starting with '$')
//
// Matching "a/b" walks root→"a"→"b" with a loop, emits '#' at every node it
// passes (root #, a/#), recurses into each '+' child (root + → "b"), and at
// the last level also emits the node's own '#' child, since "a/b/#" matches
// "a/b". The name is read level by level by index, never split, and Match
// allocates nothing.
//
// # Retained index
//
// Index is the mirror image: a tree of name levels holding one value per
// exact name, walked by a filter. An exact filter costs one lookup per
// level, "+" fans out over one level and "#" over a subtree; nothing else
// in the index is touched.
//
// # Concurrency
//
// Trie and Index each have one RWMutex over their tree. Publishing only reads
// (Match takes the read lock; the share-group cursors are atomics), so all
// event loops match in parallel; subscribing writes. Callbacks run under the
// read lock and must not call back into the same Trie or Index.
//
// Strings passed in may alias network buffers: what the package keeps, it
// copies.
package topic
