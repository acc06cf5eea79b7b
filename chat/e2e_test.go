package chat_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/chat"
)

// Two users chat: to everyone, privately by name and by id, in a group;
// :olu lists both; an unknown command prints the command list.
func TestTwoUsersChat(t *testing.T) {
	_, hs := imServer(t)
	alice := login(t, hs, "alice")
	bob := login(t, hs, "bob")

	alice.send("hello everyone")
	got := bob.waitFor("alice$ hello everyone")
	if _, ok := chat.ParseLine(got); !ok || !strings.HasPrefix(got, "[") {
		t.Fatalf("bob got %q: not [yyyy-MM-dd HH:mm:ss] sender$ text", got)
	}
	bob.send("alice;;hi alice, bob here")
	alice.waitFor("bob (private)$ hi alice, bob here")

	alice.send(":olu")
	alice.waitFor("* 2 online")
	alice.waitForFunc("bob listed", func(l string) bool { return strings.HasPrefix(l, "  ") && strings.HasSuffix(l, " bob") })

	alice.send(":join ops")
	alice.waitFor("* created group ops")
	bob.send(":join ops")
	bob.waitFor("* joined ops (2 members")
	alice.send(":g ops;;deploy done")
	bob.waitFor("alice @ops$ deploy done")
	bob.send(":groups")
	bob.waitFor("  ops")

	alice.send(":nope")
	alice.waitFor("error: unknown command :nope")
	alice.waitFor(":olu")
	alice.send(":g nogroup;;x")
	alice.waitFor("error: no group nogroup")
	alice.send("carol;;who are you")
	alice.waitFor(`error: unknown user "carol"`)

	if err := alice.quit(); err != nil {
		t.Fatalf("alice quit: %v", err)
	}
}

// A message to an offline user is stored: the sender is told, and the
// receiver gets it marked offline at login.
func TestOfflineMessagesOnLogin(t *testing.T) {
	srv, hs := imServer(t)
	carol := login(t, hs, "carol")
	carol.quit()
	waitOffline(t, srv, "carol") // the server notices a closed connection a moment later
	alice := login(t, hs, "alice")
	alice.send("carol;;while you were out")
	alice.waitFor("* carol is offline: the message is stored")
	carol = login(t, hs, "carol")
	carol.waitFor("alice (private, offline)$ while you were out")
}

func waitOffline(t *testing.T, srv *broker.Server, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		users, _ := srv.OnlineUsers(name, 0)
		if len(users) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still online 10 s after quitting", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// :delay is held by the server: it arrives after the sender quit.
func TestDelayAfterSenderQuit(t *testing.T) {
	_, hs := imServer(t)
	bob := login(t, hs, "bob")
	alice := login(t, hs, "alice")
	alice.send(":delay bob;;see you later, whole text 1")
	alice.waitFor("* delayed message")
	if err := alice.quit(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bob.waitFor("alice (private)$ see you later, whole text")
	if time.Since(start) > 5*time.Second {
		t.Fatal("delayed message late")
	}
}

// :q searches the local log and the server, the keyword highlighted, each
// message once; the local log has one file a day, zero-padded.
func TestSearchMergesLocalAndServer(t *testing.T) {
	_, hs := imServer(t)
	dir := t.TempDir()
	bob := login(t, hs, "bob")
	alice := login(t, hs, "alice", func(o *chat.Options) { o.LogDir = dir })
	bob.send("alice;;the Invoice is due")
	alice.waitFor("bob (private)$ the Invoice is due")
	alice.send("bob;;which invoice?")
	alice.send("no match here")
	alice.send(":q INVOICE")
	alice.waitFor(`* 2 messages with "INVOICE"`)
	alice.waitFor("bob (private)$ the *Invoice* is due")
	alice.waitFor("alice (to bob)$ which *invoice*?")

	day := time.Now().Format("2006-01-02")
	b, err := os.ReadFile(filepath.Join(dir, "alice", day+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "bob (private)$ the Invoice is due\n") || !strings.Contains(string(b), "alice (to bob)$ which invoice?\n") {
		t.Fatalf("log:\n%s", b)
	}
}

func TestHistoryPrefixInfoEmojiAI(t *testing.T) {
	_, hs := imServer(t)
	zh := login(t, hs, "Zhāng")
	alice := login(t, hs, "alice")
	zh.send("first to all")
	alice.waitFor("first to all")
	alice.send(":history")
	alice.waitFor("* last 1 messages with everyone")
	alice.send(":pu zH")
	alice.waitFor("* 1 online with a name starting with \"zH\"")
	alice.waitFor("*Zh*āng")
	alice.send(":info")
	alice.waitFor("* user ")
	alice.send(":emoji 1")
	alice.waitFor("* emoji page 1 of")
	alice.send(":emoji 99999")
	alice.waitFor("error: no emoji page 99999")
	zh.send("I am :smile:")
	alice.waitFor("Zhāng$ I am 😄")
	alice.send(":ai")
	alice.waitFor("* AI mode on")
	alice.send("你好吗?")
	alice.waitFor("AI$ 我好!")
	alice.send(":qai")
	alice.waitFor("* AI mode off")
	if zh.count("你好") != 0 {
		t.Fatal("an AI-mode line was sent")
	}
}

func TestStartErrors(t *testing.T) {
	_, hs := imServer(t)
	ctx := context.Background()
	if err := chat.RunLines(ctx, chat.Options{User: "dora", Password: "right", APIURL: hs.URL}, strings.NewReader(""), io.Discard); err != nil {
		t.Fatal(err)
	}
	err := chat.RunLines(ctx, chat.Options{User: "dora", Password: "wrong", APIURL: hs.URL}, strings.NewReader(""), io.Discard)
	if !errors.Is(err, chat.ErrAuth) || chat.ExitCode(err) != chat.ExitAuth {
		t.Fatalf("wrong password: %v (exit %d)", err, chat.ExitCode(err))
	}
	err = chat.RunLines(ctx, chat.Options{User: "dora", APIURL: "http://127.0.0.1:1", DialTimeout: time.Second}, strings.NewReader(""), io.Discard)
	if !errors.Is(err, chat.ErrUnreachable) || chat.ExitCode(err) != chat.ExitUnreachable {
		t.Fatalf("unreachable: %v (exit %d)", err, chat.ExitCode(err))
	}
	err = chat.RunLines(ctx, chat.Options{APIURL: hs.URL}, strings.NewReader(""), io.Discard)
	if chat.ExitCode(err) != chat.ExitUsage {
		t.Fatalf("no user: %v", err)
	}
}
