package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A terminal must come from the container's own devpts: a pty from the
// host's /dev/pts has no name inside, so tty(1) and ttyname(3) fail and
// programs that reopen their terminal break. As runc's console socket
// does, the process opens /dev/ptmx after entering its root and passes
// the master back over a socket on fd 5; the parent sets the size and
// answers with one byte before the command starts, so the first
// `stty size` already sees it.
const (
	fdConsole  = 5
	consoleEnv = "_BOCKER_CONSOLE=5"
)

// consolePair makes the socket for a terminal; the child's end goes in
// ExtraFiles at fdConsole.
func consolePair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// receiveConsole takes the master from the child and hands it to use.
// A child that failed before sending closes the socket: no console, and
// the status pipe says why.
func receiveConsole(sock *os.File, use func(*os.File)) error {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return fmt.Errorf("receive console: %w", err)
	}
	if n == 0 {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return errors.New("receive console: no file descriptor in message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return errors.New("receive console: no file descriptor in message")
	}
	use(os.NewFile(uintptr(fds[0]), "pty-master"))
	if _, err := sock.Write([]byte{1}); err != nil {
		return fmt.Errorf("release console: %w", err)
	}
	return nil
}

// setupConsole runs in the child, inside the container's root: a new pty
// becomes stdin, stdout and stderr, its master goes to the parent.
func setupConsole() error {
	if os.Getenv("_BOCKER_CONSOLE") == "" {
		return nil // the caller gave us stdio of its own
	}
	defer unix.Close(fdConsole)
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(int(n))
	slave, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			unix.Close(slave)
			return fmt.Errorf("attach %s: %w", name, err)
		}
	}
	unix.Close(slave)
	if err := unix.Sendmsg(fdConsole, []byte{0}, unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("send console: %w", err)
	}
	var ack [1]byte
	if n, err := unix.Read(fdConsole, ack[:]); err != nil || n != 1 {
		return errors.New("console: the parent did not answer")
	}
	return nil
}
