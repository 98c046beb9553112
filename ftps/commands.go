package ftps

import (
	"sort"
	"strings"

	"github.com/ftpsd/ftpsd/auth"
)

// cmdFlags describe when a command may run; the dispatcher enforces them so
// that handlers only do their own work.
type cmdFlags uint8

const (
	// open commands are allowed before login; everything else is denied
	// by default (a single allowlist, never an opt-out per command).
	open cmdFlags = 1 << iota
	// duringTransfer commands are accepted while a transfer runs.
	duringTransfer
	// needArg commands answer 501 without an argument.
	needArg
	// takesRest commands consume the REST offset and the ALLO size (once
	// the permission check passed): they apply to the next transfer
	// command only.
	takesRest
	// afterRNFR commands need a preceding RNFR (503 otherwise).
	afterRNFR
)

// command is one entry of the command table.
type command struct {
	run   func(s *session, r request) result
	flags cmdFlags
	// perm lists the rights of which one is needed (550 otherwise),
	// checked before the path is resolved.
	perm auth.Perm
	// path extracts the path the command works on from its argument, which
	// the dispatcher resolves (553 if not allowed); nil: no path.
	path pathArg
	help string
}

// pathArg returns the path in a command's argument; false is a 501.
type pathArg func(arg string) (string, bool)

var (
	wholeArg pathArg = func(arg string) (string, bool) { return arg, true }
	// lsArg drops the "ls" options clients put before the path of LIST.
	lsArg pathArg = func(arg string) (string, bool) { return listArg(arg), true }
	// mfmtArg is the path after MFMT's time-val, checked first.
	mfmtArg pathArg = func(arg string) (string, bool) {
		ts, name, ok := strings.Cut(arg, " ")
		if _, err := parseTimeVal(ts); !ok || name == "" || err != nil {
			return "", false
		}
		return name, true
	}
)

// commands is the read-only command table. Aliases share handlers.
var commands = map[string]command{
	// Security and login (RFC 2228, RFC 4217, RFC 959).
	"AUTH": {run: (*session).cmdAUTH, flags: open | needArg, help: "AUTH TLS: start TLS on the control connection"},
	"PBSZ": {run: (*session).cmdPBSZ, flags: open | needArg, help: "PBSZ 0"},
	"PROT": {run: (*session).cmdPROT, flags: open | needArg, help: "PROT P (or C where allowed)"},
	"CCC":  {run: (*session).cmdCCC, flags: open, help: "refused: the control connection stays encrypted"},
	"USER": {run: (*session).cmdUSER, flags: open | needArg, help: "USER name"},
	"PASS": {run: (*session).cmdPASS, flags: open, help: "PASS password"},
	"ACCT": {run: (*session).cmdACCT, flags: open, help: "not needed"},

	// Session and information.
	"FEAT": {run: (*session).cmdFEAT, flags: open, help: "list extensions"},
	"OPTS": {run: (*session).cmdOPTS, flags: open | needArg, help: "OPTS UTF8 ON | OPTS MLST facts | OPTS HASH [name]"},
	"SYST": {run: (*session).cmdSYST, flags: open, help: "system type"},
	"NOOP": {run: (*session).cmdNOOP, flags: open | duringTransfer, help: "do nothing"},
	"HELP": {run: (*session).cmdHELP, flags: open, help: "this list"},
	"STAT": {run: (*session).cmdSTAT, flags: open | duringTransfer, help: "status, or STAT path for a listing"},
	"QUIT": {run: (*session).cmdQUIT, flags: open | duringTransfer, help: "log out"},
	"TYPE": {run: (*session).cmdTYPE, flags: needArg, help: "TYPE I | TYPE A"},
	"MODE": {run: (*session).cmdMODE, flags: needArg, help: "MODE S"},
	"STRU": {run: (*session).cmdSTRU, flags: needArg, help: "STRU F"},
	"ALLO": {run: (*session).cmdALLO, flags: needArg, help: "ALLO size (used by S3 homes)"},

	// Directories and files.
	"PWD":  {run: (*session).cmdPWD, help: "print working directory"},
	"XPWD": {run: (*session).cmdPWD, help: "alias of PWD"},
	"CWD":  {run: (*session).cmdCWD, flags: needArg, path: wholeArg, help: "CWD path"},
	"XCWD": {run: (*session).cmdCWD, flags: needArg, path: wholeArg, help: "alias of CWD"},
	"CDUP": {run: (*session).cmdCDUP, help: "go to the parent directory"},
	"XCUP": {run: (*session).cmdCDUP, help: "alias of CDUP"},
	"MKD":  {run: (*session).cmdMKD, flags: needArg, perm: auth.PermMkdir, path: wholeArg, help: "MKD path"},
	"XMKD": {run: (*session).cmdMKD, flags: needArg, perm: auth.PermMkdir, path: wholeArg, help: "alias of MKD"},
	"RMD":  {run: (*session).cmdRMD, flags: needArg, perm: auth.PermDelete, path: wholeArg, help: "RMD path"},
	"XRMD": {run: (*session).cmdRMD, flags: needArg, perm: auth.PermDelete, path: wholeArg, help: "alias of RMD"},
	"DELE": {run: (*session).cmdDELE, flags: needArg, perm: auth.PermDelete, path: wholeArg, help: "DELE path"},
	"RNFR": {run: (*session).cmdRNFR, flags: needArg, perm: auth.PermRename, path: wholeArg, help: "RNFR path"},
	"RNTO": {run: (*session).cmdRNTO, flags: needArg | afterRNFR, perm: auth.PermRename, path: wholeArg, help: "RNTO path"},
	"SIZE": {run: (*session).cmdSIZE, flags: needArg, perm: auth.PermList | auth.PermRead, path: wholeArg, help: "SIZE path"},
	"MDTM": {run: (*session).cmdMDTM, flags: needArg, perm: auth.PermList | auth.PermRead, path: wholeArg, help: "MDTM path"},
	"MFMT": {run: (*session).cmdMFMT, flags: needArg, perm: auth.PermWrite, path: mfmtArg, help: "MFMT YYYYMMDDHHMMSS path"},
	"HASH": {run: (*session).cmdHASH, flags: needArg, perm: auth.PermRead, path: wholeArg, help: "HASH path (OPTS HASH selects the algorithm)"},
	"MLST": {run: (*session).cmdMLST, perm: auth.PermList, path: wholeArg, help: "MLST [path]"},

	// Data connections and transfers.
	"PASV": {run: (*session).cmdPASV, help: "passive mode (IPv4)"},
	"EPSV": {run: (*session).cmdEPSV, help: "extended passive mode"},
	"PORT": {run: (*session).cmdPORT, help: "PORT h1,h2,h3,h4,p1,p2: active mode, if enabled"},
	"EPRT": {run: (*session).cmdEPRT, help: "EPRT |proto|addr|port|: active mode, if enabled"},
	"REST": {run: (*session).cmdREST, flags: needArg, help: "REST offset"},
	"RETR": {run: (*session).cmdRETR, flags: needArg | takesRest, perm: auth.PermRead, path: wholeArg, help: "RETR path"},
	"STOR": {run: (*session).cmdSTOR, flags: needArg | takesRest, perm: auth.PermWrite, path: wholeArg, help: "STOR path"},
	"APPE": {run: (*session).cmdAPPE, flags: needArg | takesRest, perm: auth.PermWrite, path: wholeArg, help: "APPE path"},
	"STOU": {run: (*session).cmdSTOU, flags: takesRest, perm: auth.PermWrite, help: "store under a unique name"},
	"LIST": {run: (*session).cmdLIST, flags: takesRest, perm: auth.PermList, path: lsArg, help: "LIST [path]"},
	"NLST": {run: (*session).cmdNLST, flags: takesRest, perm: auth.PermList, path: lsArg, help: "NLST [path]"},
	"MLSD": {run: (*session).cmdMLSD, flags: takesRest, perm: auth.PermList, path: wholeArg, help: "MLSD [path]"},
	"ABOR": {run: (*session).cmdABOR, flags: duringTransfer, help: "abort the transfer"},
}

// dispatch looks a command up, applies the table's gates and runs it.
func (s *session) dispatch(verb, arg string) result {
	if verb == "PASS" {
		s.log.Debug("command", "cmd", "PASS ****")
	} else {
		s.log.Debug("command", "cmd", verb, "arg", arg)
	}
	c, ok := commands[verb]
	if !ok {
		if verb == "" {
			return say(reply{500, "Empty command."})
		}
		return say(reply{500, "Unknown command."})
	}
	if s.transferRunning() && c.flags&duringTransfer == 0 {
		return say(replyTransferBusy)
	}
	if c.flags&open == 0 && s.state != stateReady {
		return say(replyNeedLogin)
	}
	if c.flags&needArg != 0 && strings.TrimSpace(arg) == "" {
		return say(replySyntax)
	}
	from := s.renameFrom
	s.renameFrom = vpath{} // RNFR holds for the next command only
	if c.flags&afterRNFR != 0 && from == (vpath{}) {
		return say(reply{503, "RNFR required first."})
	}
	req, err := s.gate(verb, c, arg)
	if err != nil {
		return fail(err)
	}
	req.from = from
	return c.run(s, req)
}

// gate checks a command's permission and resolves its path, in that
// order, consuming the REST offset in between (a refused command leaves it).
func (s *session) gate(verb string, c command, arg string) (request, error) {
	req := request{arg: arg}
	if c.perm != 0 && !s.allowed(c.perm, verb) {
		return req, replyError{replyNoPerm}
	}
	if c.flags&takesRest != 0 {
		req.offset = s.takeRest()
		req.size, s.allo = s.allo, 0
	}
	if c.path == nil {
		return req, nil
	}
	p, ok := c.path(arg)
	if !ok {
		return req, replyError{replySyntax}
	}
	var err error
	req.path, err = s.resolve(p)
	return req, err
}

// allowed checks that the user has one of the rights in p, and logs a
// refusal.
func (s *session) allowed(p auth.Perm, op string) bool {
	if s.user.Perms&p != 0 {
		return true
	}
	s.log.Info("permission denied", "need", p.String(), "op", op)
	return false
}

// helpText lists the commands, sorted, eight to a line.
func helpText() string {
	verbs := make([]string, 0, len(commands))
	for v := range commands {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	var b strings.Builder
	b.WriteString("The following commands are recognized.\n")
	for i := 0; i < len(verbs); i += 8 {
		b.WriteString(" " + strings.Join(verbs[i:min(i+8, len(verbs))], " ") + "\n")
	}
	b.WriteString("Help OK.")
	return b.String()
}

// featText is the FEAT reply: exactly what is implemented.
const featText = `Extensions supported:
 AUTH TLS
 AUTH SSL
 PBSZ
 PROT
 EPSV
 MDTM
 MFMT
 MLST type*;size*;modify*;perm*;unique*;
 REST STREAM
 SIZE
 TVFS
 UTF8
End`
