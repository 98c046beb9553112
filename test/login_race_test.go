package test

import (
	"fmt"
	"testing"

	"github.com/ftpsd/ftpsd/auth"
	"github.com/ftpsd/ftpsd/test/ftpstest"
)

// TestLoginRaceBan: ten control connections from one address, each at its
// password prompt, send PASS at the same moment, nine wrong and one right.
// No more than max_failures of the passwords may be judged (230 or 530),
// and the right one gets either 230 (judged before any ban) or exactly the
// reply a wrong one got: no reply is given only to the right password, so
// a burst of guesses cannot get past the ban nor tell which guess was right.
func TestLoginRaceBan(t *testing.T) {
	t.Parallel()
	const conns, maxFailures = 10, 5
	// A hash at the production cost takes long enough that every PASS has
	// arrived before the first one is judged, even on a busy machine.
	hash, err := auth.HashPassword(pass)
	if err != nil {
		t.Fatal(err)
	}
	for _, rightAt := range []int{0, conns / 2, conns - 1} {
		t.Run(fmt.Sprintf("right password %d of %d", rightAt+1, conns), func(t *testing.T) {
			t.Parallel()
			s := ftpstest.NewServer(t, ftpstest.Options{
				Users: []ftpstest.User{{Name: user, Password: pass, Hash: hash}},
				Auth:  func(c *auth.Config) { c.MaxFailures = maxFailures },
			})
			cs := make([]*ftpstest.Conn, conns)
			for i := range cs {
				cs[i] = s.DialTLS(t)
				cs[i].Cmd(331, "USER "+user)
			}
			// Ten writes take microseconds; one hash takes tens of
			// milliseconds.
			for i, c := range cs {
				pw := "wrong"
				if i == rightAt {
					pw = pass
				}
				c.Send("PASS " + pw)
			}

			type reply struct {
				code int
				msg  string
			}
			replies := make([]reply, conns)
			for i, c := range cs {
				code, msg := c.Read()
				replies[i] = reply{code, msg}
			}
			judged := 0
			wrongGot := map[reply]bool{}
			for i, r := range replies {
				if r.code == 230 || r.code == 530 {
					judged++
				}
				if i != rightAt {
					wrongGot[r] = true
				}
			}
			if judged > maxFailures {
				t.Errorf("%d passwords judged (230 or 530); want at most max_failures = %d; replies %v", judged, maxFailures, replies)
			}
			if r := replies[rightAt]; r.code != 230 && !wrongGot[r] {
				t.Errorf("the right password got %d %q, which no wrong one got; replies %v", r.code, r.msg, replies)
			}
			if r := replies[rightAt]; r.code != 230 && r.code != 421 {
				t.Errorf("the right password got %d %q; want 230 or 421", r.code, r.msg)
			}
		})
	}
}
