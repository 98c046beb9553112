package ftps

import (
	"sort"
	"strings"
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
)

// command is one entry of the command table.
type command struct {
	run   func(s *session, arg string) reply
	flags cmdFlags
	help  string
}

// commands is the read-only command table. Aliases share handlers.
var commands = map[string]command{
	// Security and login (RFC 2228, RFC 4217, RFC 959).
	"AUTH": {(*session).cmdAUTH, open | needArg, "AUTH TLS: start TLS on the control connection"},
	"PBSZ": {(*session).cmdPBSZ, open | needArg, "PBSZ 0"},
	"PROT": {(*session).cmdPROT, open | needArg, "PROT P (or C where allowed)"},
	"CCC":  {(*session).cmdCCC, open, "refused: the control connection stays encrypted"},
	"USER": {(*session).cmdUSER, open | needArg, "USER name"},
	"PASS": {(*session).cmdPASS, open, "PASS password"},
	"ACCT": {(*session).cmdACCT, open, "not needed"},

	// Session and information.
	"FEAT": {(*session).cmdFEAT, open, "list extensions"},
	"OPTS": {(*session).cmdOPTS, open | needArg, "OPTS UTF8 ON | OPTS MLST facts"},
	"SYST": {(*session).cmdSYST, open, "system type"},
	"NOOP": {(*session).cmdNOOP, open | duringTransfer, "do nothing"},
	"HELP": {(*session).cmdHELP, open, "this list"},
	"STAT": {(*session).cmdSTAT, open | duringTransfer, "status, or STAT path for a listing"},
	"QUIT": {(*session).cmdQUIT, open | duringTransfer, "log out"},
	"TYPE": {(*session).cmdTYPE, needArg, "TYPE I | TYPE A"},
	"MODE": {(*session).cmdMODE, needArg, "MODE S"},
	"STRU": {(*session).cmdSTRU, needArg, "STRU F"},
	"ALLO": {(*session).cmdALLO, 0, "ignored"},

	// Directories and files.
	"PWD":  {(*session).cmdPWD, 0, "print working directory"},
	"XPWD": {(*session).cmdPWD, 0, "alias of PWD"},
	"CWD":  {(*session).cmdCWD, needArg, "CWD path"},
	"XCWD": {(*session).cmdCWD, needArg, "alias of CWD"},
	"CDUP": {(*session).cmdCDUP, 0, "go to the parent directory"},
	"XCUP": {(*session).cmdCDUP, 0, "alias of CDUP"},
	"MKD":  {(*session).cmdMKD, needArg, "MKD path"},
	"XMKD": {(*session).cmdMKD, needArg, "alias of MKD"},
	"RMD":  {(*session).cmdRMD, needArg, "RMD path"},
	"XRMD": {(*session).cmdRMD, needArg, "alias of RMD"},
	"DELE": {(*session).cmdDELE, needArg, "DELE path"},
	"RNFR": {(*session).cmdRNFR, needArg, "RNFR path"},
	"RNTO": {(*session).cmdRNTO, needArg, "RNTO path"},
	"SIZE": {(*session).cmdSIZE, needArg, "SIZE path"},
	"MDTM": {(*session).cmdMDTM, needArg, "MDTM path"},
	"MFMT": {(*session).cmdMFMT, needArg, "MFMT YYYYMMDDHHMMSS path"},
	"MLST": {(*session).cmdMLST, 0, "MLST [path]"},

	// Data connections and transfers.
	"PASV": {(*session).cmdPASV, 0, "passive mode (IPv4)"},
	"EPSV": {(*session).cmdEPSV, 0, "extended passive mode"},
	"PORT": {(*session).cmdPORT, 0, "refused: use PASV or EPSV"},
	"EPRT": {(*session).cmdPORT, 0, "refused: use PASV or EPSV"},
	"REST": {(*session).cmdREST, needArg, "REST offset"},
	"RETR": {(*session).cmdRETR, needArg, "RETR path"},
	"STOR": {(*session).cmdSTOR, needArg, "STOR path"},
	"APPE": {(*session).cmdAPPE, needArg, "APPE path"},
	"STOU": {(*session).cmdSTOU, 0, "store under a unique name"},
	"LIST": {(*session).cmdLIST, 0, "LIST [path]"},
	"NLST": {(*session).cmdNLST, 0, "NLST [path]"},
	"MLSD": {(*session).cmdMLSD, 0, "MLSD [path]"},
	"ABOR": {(*session).cmdABOR, duringTransfer, "abort the transfer"},
}

// dispatch looks a command up and applies the table's gates.
func (s *session) dispatch(verb, arg string) reply {
	if verb == "PASS" {
		s.log.Debug("command", "cmd", "PASS ****")
	} else {
		s.log.Debug("command", "cmd", verb, "arg", arg)
	}
	c, ok := commands[verb]
	if !ok {
		if verb == "" {
			return reply{500, "Empty command."}
		}
		return reply{500, "Unknown command."}
	}
	if s.transferRunning() && c.flags&duringTransfer == 0 {
		return replyTransferBusy
	}
	if c.flags&open == 0 && s.state != stateReady {
		return replyNeedLogin
	}
	if c.flags&needArg != 0 && strings.TrimSpace(arg) == "" {
		return replySyntax
	}
	if verb != "RNTO" {
		s.renameFrom, s.renameVirt = "", ""
	}
	return c.run(s, arg)
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
