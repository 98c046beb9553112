package main

// Accounting of a server's whole process tree: per logged-in session
// vsftpd runs three processes, Pure-FTPd two, ProFTPD one, ftpsd none. CPU time and
// memory are therefore summed over every process of the server.
//
// Preferred: a cgroup of its own (v2, or v1's cpuacct controller), into
// which the master process is moved right after it starts; every process
// it forks later is in it, and the cgroup's CPU counter keeps the time of
// processes that have already exited. Fallback when no cgroup can be made:
// walk /proc for the master's descendants and sum utime+stime+cutime+cstime
// of the live ones (cutime and cstime hold the children each process has
// reaped, so the time of finished sessions is kept as long as their
// parents wait for them, which these servers do).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat: 100 on
// every Linux architecture Go supports.
const clockTick = 100

// accounting measures one server's processes.
type accounting struct {
	pid    int    // the master process
	cgroup string // cgroup directory, "" for the /proc fallback
	v2     bool
}

// method says how the figures are taken, for the report.
func (a *accounting) method() string {
	switch {
	case a.cgroup == "":
		return "/proc walk of the process tree (utime+stime+cutime+cstime)"
	case a.v2:
		return "cgroup v2 cpu.stat usage_usec"
	}
	return "cgroup v1 cpuacct.usage"
}

// newAccounting puts pid into a fresh cgroup named after key, or falls
// back to /proc when that is not possible (not root, no cgroup mount).
func newAccounting(pid int, key string) *accounting {
	a := &accounting{pid: pid}
	name := "ftpsd-compare-" + key
	type place struct {
		dir string
		v2  bool
	}
	var places []place
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		places = append(places, place{filepath.Join("/sys/fs/cgroup", name), true})
	}
	places = append(places, place{filepath.Join("/sys/fs/cgroup/cpuacct", name), false})
	for _, c := range places {
		if err := os.Mkdir(c.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			continue
		}
		if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			os.Remove(c.dir)
			continue
		}
		a.cgroup, a.v2 = c.dir, c.v2
		break
	}
	return a
}

// close removes the cgroup once its processes are gone.
func (a *accounting) close() {
	if a.cgroup == "" {
		return
	}
	for range 50 {
		if err := os.Remove(a.cgroup); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpu is the CPU time (user + system) the server's processes have used.
func (a *accounting) cpu() (time.Duration, error) {
	if a.cgroup != "" && a.v2 {
		b, err := os.ReadFile(filepath.Join(a.cgroup, "cpu.stat"))
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				return time.Duration(n) * time.Microsecond, err
			}
		}
		return 0, errors.New("cpu.stat: no usage_usec")
	}
	if a.cgroup != "" {
		b, err := os.ReadFile(filepath.Join(a.cgroup, "cpuacct.usage"))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n), err
	}
	var ticks int64
	for _, p := range processTree(a.pid) {
		ticks += p.utime + p.stime + p.cutime + p.cstime
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// pids are the server's live processes.
func (a *accounting) pids() []int {
	if a.cgroup != "" {
		b, err := os.ReadFile(filepath.Join(a.cgroup, "cgroup.procs"))
		if err == nil {
			var out []int
			for f := range strings.FieldsSeq(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
			return out
		}
	}
	var out []int
	for _, p := range processTree(a.pid) {
		out = append(out, p.pid)
	}
	return out
}

// pss is the proportional set size of all the server's processes, in
// bytes: shared pages (the binary, libraries, copy-on-write pages of a
// forking server) are split among the processes that map them, so the sum
// is what the server costs, which RSS would count several times.
func (a *accounting) pss() (int64, int, error) {
	var sum int64
	n := 0
	for _, pid := range a.pids() {
		kb, err := pssOf(pid)
		if errors.Is(err, os.ErrNotExist) {
			continue // exited in between
		}
		if err != nil {
			return 0, 0, err
		}
		sum += kb << 10
		n++
	}
	return sum, n, nil
}

// pssOf reads "Pss:" (kB) from /proc/PID/smaps_rollup.
func pssOf(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Pss line", pid)
}

// procStat is what processTree needs of /proc/PID/stat.
type procStat struct {
	pid, ppid                    int
	utime, stime, cutime, cstime int64
}

// parseStat reads /proc/PID/stat. The command name is in parentheses and
// may hold spaces and parentheses itself, so the fields are counted from
// the last ")".
func parseStat(b []byte) (procStat, error) {
	var p procStat
	i := bytes.LastIndexByte(b, ')')
	open := bytes.IndexByte(b, '(')
	if i < 0 || open < 1 {
		return p, errors.New("malformed stat")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return p, err
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is the state (field 3); ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return p, errors.New("malformed stat: too few fields")
	}
	nums := make([]int64, 5)
	for j, k := range []int{1, 11, 12, 13, 14} {
		if nums[j], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return p, err
		}
	}
	return procStat{pid: pid, ppid: int(nums[0]), utime: nums[1], stime: nums[2], cutime: nums[3], cstime: nums[4]}, nil
}

// processTree returns root and its live descendants.
func processTree(root int) []procStat {
	entries, _ := os.ReadDir("/proc")
	all := map[int]procStat{}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		p, err := parseStat(b)
		if err != nil {
			continue
		}
		all[pid] = p
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var out []procStat
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		p, ok := all[pid]
		if !ok {
			continue
		}
		out = append(out, p)
		queue = append(queue, children[pid]...)
	}
	return out
}
