package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kyokomi/emoji/v2"
)

//go:embed static
var static embed.FS

// Files is the page's files (index.html at the root).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// file is one file ready to serve.
type file struct {
	body, gz []byte
	ctype    string
	etag     string
}

var files = sync.OnceValue(func() map[string]*file {
	m := map[string]*file{}
	_ = fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), p)
		if err != nil {
			return err
		}
		m["/"+p] = prepare(p, b)
		return nil
	})
	e, _ := json.Marshal(emoji.CodeMap())
	m["/emoji.json"] = prepare("emoji.json", e)
	m["/"] = m["/index.html"]
	return m
})

func prepare(name string, b []byte) *file {
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	w.Write(b)
	w.Close()
	sum := sha256.Sum256(b)
	ct := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) { // not every system's mime table has them right
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".html":
		ct = "text/html; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	case ".json":
		ct = "application/json"
	}
	return &file{body: b, gz: z.Bytes(), ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// Handler serves the page (GET and HEAD; any other path 404). Mount it
// at / of the HTTP API's mux: more specific API routes win.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, ok := files()[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache") // revalidate: a new binary may bring new files
		h.Set("Vary", "Accept-Encoding")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" || strings.HasSuffix(r.URL.Path, ".html") {
			h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'")
		}
		body := f.body
		if acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			body = f.gz
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			q, _ = strconv.ParseFloat(v, 64)
		}
		return q > 0
	}
	return false
}

// Paths are the URL paths Handler serves, as net/http patterns ("/{$}"
// is exactly "/"), for a mux that answers unknown paths itself:
//
//	for _, p := range web.Paths() { mux.Handle("GET "+p, web.Handler()) }
func Paths() []string {
	var out []string
	for p := range files() {
		if p == "/" {
			p = "/{$}"
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Mount registers the page on a mux through its handle function (the
// HTTP API's Handle): GET of each of Paths.
func Mount(handle func(method, path string, h http.Handler)) {
	h := Handler()
	for _, p := range Paths() {
		handle(http.MethodGet, p, h)
	}
}
