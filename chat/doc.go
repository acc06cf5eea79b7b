// Package chat is cim chat, the terminal client of cim's IM server, the
// successor of cim's cim-client: command parsing with cim's syntax, the
// display of messages, the local chat log, the AI mode's rewrite rules,
// emoji aliases and the merge of local and server history search. It is
// built on the Go SDK (client) and speaks only the native protocol (plus
// the HTTP API to register and to find the node).
//
//	input line                 Parse          what it does
//	hello everyone             KindText       Send(Everyone())
//	bob;;hi  /  42;;hi         KindPrivate    Send(User(id)); a name is resolved
//	:g ops;;deploy done        KindGroup      Send(Group("ops"))
//	:delay bob;;hi 30          KindDelay      Publish{Delay: 30 s}: held by the server
//	:q keyword                 KindSearch     local log ∪ server Search, highlighted
//	:olu, :pu prefix, :info, :emoji 2, :join g, :leave g, :groups,
//	:history [user|@group], :ai, :qai, :all, :help, :q!
//
// A received message is one line (Line), coloured only on a terminal:
//
//	[2025-01-02 15:04:05] alice$ hello everyone
//	[2025-01-02 15:04:05] alice (private)$ hi bob
//	[2025-01-02 15:04:05] alice @ops$ deploy done
//	[2025-01-02 15:04:05] alice (private, offline)$ sent while you were away
//
// Lines that are not messages start with "* " (information), "error: "
// or "warning: ". The local log (Log) keeps the same lines, one file per
// user per day. Two front ends share the Session: RunLines (no terminal:
// commands from a reader, one line per message, end of input = :q!) and
// RunTerminal (readline: line editing, input history, a prompt that
// survives incoming messages).
package chat
