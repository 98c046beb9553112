package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/ftps"
)

// controlSocketName is the control socket in server.state_dir, for
// "ftpsd who" and "ftpsd ban". Only its file mode (0600) guards it.
const controlSocketName = "ftpsd.sock"

// The control API, JSON over HTTP on the control socket:
//
//	GET    /sessions      sessionsDoc
//	GET    /bans          bansDoc
//	DELETE /bans/{addr}   unbanDoc (404 when there was nothing to lift)
//
// Errors are an errorDoc with a 4xx or 5xx status.

// sessionsDoc is the answer to GET /sessions: the sessions, and the
// limits and usage of each user logged in.
type sessionsDoc struct {
	Now      time.Time     `json:"now"`
	Sessions []sessionJSON `json:"sessions"`
	Users    []userJSON    `json:"users"`
}

// userJSON is one logged-in user's limits (0: unlimited) and usage.
type userJSON struct {
	Name            string   `json:"name"`
	Sessions        int      `json:"sessions"`
	MaxSessions     int      `json:"max_sessions"`
	DownloadRate    int64    `json:"download_rate"` // bytes per second
	UploadRate      int64    `json:"upload_rate"`
	QuotaBytes      int64    `json:"quota_bytes"`
	QuotaFiles      int64    `json:"quota_files"`
	UsedBytes       *int64   `json:"used_bytes,omitempty"` // with a quota, once the home is scanned
	UsedFiles       *int64   `json:"used_files,omitempty"`
	AllowedNetworks []string `json:"allowed_networks"` // empty: anywhere
	Summary         string   `json:"summary"`          // the line "ftpsd who" prints
}

type sessionJSON struct {
	ID          uint64        `json:"id"`
	User        string        `json:"user"` // "" before login
	Client      string        `json:"client"`
	Since       time.Time     `json:"since"`
	IdleSeconds float64       `json:"idle_seconds"`
	TLS         bool          `json:"tls"`
	Transfer    *transferJSON `json:"transfer,omitempty"`
}

type transferJSON struct {
	Op             string    `json:"op"`
	Upload         bool      `json:"upload"`
	Bytes          int64     `json:"bytes"`
	Started        time.Time `json:"started"`
	BytesPerSecond float64   `json:"bytes_per_second"` // average since Started
}

// bansDoc is the answer to GET /bans.
type bansDoc struct {
	Now  time.Time `json:"now"`
	Bans []banJSON `json:"bans"`
}

type banJSON struct {
	Client      string    `json:"client"`                // an IPv4 /32 or an IPv6 /64
	BannedUntil time.Time `json:"banned_until,omitzero"` // absent: not banned, failures counting
	Failures    int       `json:"failures"`              // in the running failure_window
}

// unbanDoc is the answer to DELETE /bans/{addr}.
type unbanDoc struct {
	Client string `json:"client"`
}

type errorDoc struct {
	Error string `json:"error"`
}

// controlAPI serves the control socket's requests. Everything it uses is
// safe for concurrent use; bansPath is fixed (state_dir needs a restart).
type controlAPI struct {
	srv      *ftps.Server
	store    *auth.Store
	bansPath string
	log      *slog.Logger
}

func (a *controlAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions", a.sessions)
	mux.HandleFunc("GET /bans", a.bans)
	mux.HandleFunc("DELETE /bans/{addr...}", a.unban)
	return mux
}

func (a *controlAPI) sessions(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	doc := sessionsDoc{Now: now, Sessions: []sessionJSON{}}
	var names []string
	for _, s := range a.srv.Sessions() {
		j := sessionJSON{ID: s.ID, User: s.User, Client: s.Client.String(), Since: s.Since,
			IdleSeconds: math.Round(s.Idle.Seconds()*1000) / 1000, TLS: s.TLS}
		if x := s.Transfer; x != nil {
			j.Transfer = &transferJSON{Op: x.Op, Upload: x.Upload, Bytes: x.Bytes, Started: x.Started}
			if d := now.Sub(x.Started).Seconds(); d > 0 {
				j.Transfer.BytesPerSecond = math.Round(float64(x.Bytes) / d)
			}
		}
		doc.Sessions = append(doc.Sessions, j)
		if s.User != "" && !slices.Contains(names, s.User) {
			names = append(names, s.User)
		}
	}
	slices.Sort(names)
	doc.Users = []userJSON{}
	for _, name := range names {
		if u, ok := a.srv.UserUsage(name); ok {
			doc.Users = append(doc.Users, userDoc(name, u))
		}
	}
	writeJSON(w, http.StatusOK, doc)
}

func userDoc(name string, u ftps.UserUsage) userJSON {
	l := u.Limits
	j := userJSON{Name: name, Sessions: u.Sessions, MaxSessions: l.MaxSessions,
		DownloadRate: l.DownloadRate, UploadRate: l.UploadRate,
		QuotaBytes: l.QuotaBytes, QuotaFiles: l.QuotaFiles,
		AllowedNetworks: []string{}, Summary: u.String()}
	if l.HasQuota() && u.Scanned {
		j.UsedBytes, j.UsedFiles = &u.QuotaBytes, &u.QuotaFiles
	}
	for _, p := range l.AllowedNetworks {
		j.AllowedNetworks = append(j.AllowedNetworks, p.String())
	}
	return j
}

func (a *controlAPI) bans(w http.ResponseWriter, _ *http.Request) {
	doc := bansDoc{Now: time.Now(), Bans: []banJSON{}}
	for _, b := range a.store.Bans() {
		doc.Bans = append(doc.Bans, banJSON{Client: b.Client.String(), BannedUntil: b.Until, Failures: b.Failures})
	}
	writeJSON(w, http.StatusOK, doc)
}

// unban lifts a ban and saves the bans at once, so that a restart does not
// bring it back.
func (a *controlAPI) unban(w http.ResponseWriter, r *http.Request) {
	ip, err := parseClient(r.PathValue("addr"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorDoc{err.Error()})
		return
	}
	key, ok := a.store.Unban(ip)
	if !ok {
		writeJSON(w, http.StatusNotFound, errorDoc{fmt.Sprintf("%s: no ban or failed login on record", key)})
		return
	}
	a.log.Info("login ban lifted", "client", key.String(), "by", "ftpsd ban remove")
	if err := a.store.SaveBans(a.bansPath); err != nil {
		a.log.Warn("could not save login bans", "file", a.bansPath, "err", err)
		writeJSON(w, http.StatusInternalServerError, errorDoc{fmt.Sprintf("%s: lifted, but saving %s failed (a restart would restore it): %v", key, a.bansPath, err)})
		return
	}
	writeJSON(w, http.StatusOK, unbanDoc{Client: key.String()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// parseClient reads a client as "ftpsd ban" names it: an IP address, or a
// client key as "ftpsd ban list" shows it (an IPv4 /32, an IPv6 /64).
func parseClient(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != auth.ClientKey(p.Addr()) {
			return netip.Addr{}, fmt.Errorf("%q is neither an IP address nor a banned client (an IPv4 address or an IPv6 /64)", s)
		}
		return p.Addr(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return ip, nil
}

// controlServer is the running control socket.
type controlServer struct {
	path string
	http *http.Server
	done chan struct{}
}

// startControl listens on the control socket in stateDir and serves api
// on it. A socket left by a crash is replaced; one that answers belongs to
// another running server and is left alone (an error).
func startControl(stateDir string, api *controlAPI, log *slog.Logger) (*controlServer, error) {
	path := filepath.Join(stateDir, controlSocketName)
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another ftpsd answers on it (two servers on one server.state_dir?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale %s: %w", path, err)
		}
		log.Info("replaced a stale control socket", "path", path)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, err
	}
	c := &controlServer{path: path, done: make(chan struct{}), http: &http.Server{
		Handler:           api.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	go func() {
		defer close(c.done)
		if err := c.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control socket stopped", "path", path, "err", err)
		}
	}()
	return c, nil
}

// listenPrivate listens on a Unix socket at path with mode 0600. The
// socket is bound with the umask's mode, so it is bound in a new directory
// of mode 0700 beside path, restricted, and only then renamed to path:
// nobody else can connect to it in between, whatever the umask and the
// mode of path's directory (a connection made in that moment would be
// served after the chmod).
func listenPrivate(path string) (*net.UnixListener, error) {
	// Short names: a socket's path has at most 107 bytes.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".s")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // the name changes: controlServer.Close removes path
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Close stops serving, waiting a moment for requests in progress, and
// removes the socket.
func (c *controlServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.http.Shutdown(ctx) != nil {
		c.http.Close()
	}
	<-c.done
	os.Remove(c.path)
}
