package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/cimgo/cim/client"
)

// Log in through the HTTP API (registering the name on first use), listen
// for messages and send a private one. It needs a cim server: `cim
// server` on this machine.
func Example() {
	c, err := client.Dial(context.Background(), client.Options{
		UserName: "alice",
		Password: "secret",
		APIURL:   "http://127.0.0.1:8083",
		Register: true,
		OnMessage: func(m *client.Message) {
			fmt.Printf("[%s] %s$ %s\n", m.Time.Format("2006-01-02 15:04:05"), m.FromName, m.Body)
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ack, err := c.Send(context.Background(), client.User(42), []byte("hello"))
	switch {
	case errors.Is(err, client.ErrOffline):
		fmt.Println("stored until user 42 logs in, as message", ack.MsgID)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("delivered as message", ack.MsgID)
	}
}

// Connect to native addresses directly; the client tries them in turn and
// reconnects on its own, calling OnFatal if it has to give up.
func ExampleDial() {
	c, err := client.Dial(context.Background(), client.Options{
		UserID:     42,
		Password:   "secret",
		Addrs:      []string{"10.0.0.1:9000", "10.0.0.2:9000"},
		RetryLimit: -1, // never give up
		OnStateChange: func(from, to client.State) {
			log.Printf("connection: %v -> %v", from, to)
		},
		OnFatal: func(err error) { log.Printf("gave up: %v", err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("logged in on node", c.Info().Node)
}

// A batch to a group, delivered in order, and a message the server holds
// for a minute. Batches and delays work for every kind of target.
func ExampleClient_Publish() {
	c, err := client.Dial(context.Background(), client.Options{UserName: "alice", Password: "secret",
		Addrs: []string{"127.0.0.1:9000"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	acks, err := c.Publish(ctx, client.Publish{
		To:    client.Group("ops"),
		Batch: [][]byte{[]byte("deploy starts"), []byte("deploy done")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("message ids", acks[0].MsgID, acks[1].MsgID)

	if _, err := c.Publish(ctx, client.Publish{To: client.Everyone(), Body: []byte("stand-up!"), Delay: time.Minute}); err != nil {
		log.Fatal(err)
	}
}

// Send without waiting; the callback runs on the client's callback
// goroutine once the server answered.
func ExampleClient_PublishAsync() {
	c, err := client.Dial(context.Background(), client.Options{UserName: "alice", Password: "secret",
		Addrs: []string{"127.0.0.1:9000"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 100; i++ {
		_, err := c.PublishAsync(client.Publish{To: client.User(42), Body: []byte(fmt.Sprint(i))},
			func(acks []client.Ack, err error) {
				if !client.Accepted(err) {
					log.Printf("message %d: %v", acks[0].ID, err)
				}
			})
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Flush(context.Background()); err != nil { // wait for every ack
		log.Fatal(err)
	}
}

// Devices publishing over MQTT to sensors/... reach a native client that
// subscribed.
func ExampleClient_Subscribe() {
	c, err := client.Dial(context.Background(), client.Options{UserName: "dashboard", Password: "secret",
		Addrs: []string{"127.0.0.1:9000"},
		OnMessage: func(m *client.Message) {
			fmt.Printf("%s from %s: %s\n", m.To.Name, m.FromName, m.Body)
		}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(context.Background(), "sensors/#"); err != nil {
		log.Fatal(err)
	}
	select {}
}

// Search the server-side history, newest first, and page through one
// conversation.
func ExampleClient_History() {
	c, err := client.Dial(context.Background(), client.Options{UserName: "alice", Password: "secret",
		Addrs: []string{"127.0.0.1:9000"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	hits, err := c.Search(ctx, "invoice", 20)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range hits {
		fmt.Printf("%s %s: %s\n", m.Time.Format(time.DateTime), m.FromName, m.Body)
	}
	q := client.HistoryQuery{With: client.User(42), Limit: 50}
	for {
		page, err := c.History(ctx, q)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range page.Messages {
			fmt.Printf("%s: %s\n", m.FromName, m.Body)
		}
		if len(page.Next) == 0 {
			break
		}
		q.Cursor = page.Next
	}
}

// Online users whose name starts with "al", and groups.
func ExampleClient_OnlineUsers() {
	c, err := client.Dial(context.Background(), client.Options{UserName: "alice", Password: "secret",
		Addrs: []string{"127.0.0.1:9000"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	users, err := c.OnlineUsers(ctx, "al", 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, u := range users {
		fmt.Println(u.ID, u.Name)
	}
	if _, err := c.CreateGroup(ctx, "ops"); err != nil {
		log.Fatal(err)
	}
	members, _ := c.GroupMembers(ctx, "ops")
	fmt.Println(len(members), "in ops")
}
