/*
 * amp-runner: PID 1 of the containers amp starts (docs/runner.md).
 *
 *   amp-runner serve SOCKET CMD [ARG...]
 *
 * Docker bind-mounts this binary read-only and makes it the entrypoint; CMD is the image's own
 * ENTRYPOINT and CMD, which the worker read with `docker image inspect`, and the container keeps
 * the image's WorkingDir, User and Env. The runner connects to the worker's unix socket SOCKET (a
 * bind mount too) and runs one fresh process of CMD per call it is sent there: one call in a
 * container used once, many one after another in a warm one. It does PID 1's job (forwards
 * signals, reaps every zombie) and reports the function's exit status the moment it exits, so the
 * worker never waits for Docker to notice.
 *
 * Frames, both ways: 1 byte type, 4 bytes big-endian payload length, the payload.
 *   runner -> worker: 'H' hello ("amp-runner/1", once connected), 'O' stdout bytes, 'E' stderr
 *                     bytes, 'X' exit (2 bytes: 'e' and the exit code, or 's' and the signal),
 *                     'F' the call's process could not be started, or the runner fails (one line).
 *   worker -> runner: 'S' start a call (1 byte: 1 when more calls will follow, 0 for the last),
 *                     'I' input bytes, 'C' end of input.
 * Only the runner writes frames: a function's stdout and stderr are pipes the runner reads, the
 * socket is closed on exec, and the runner is not dumpable, so no process of the function can open
 * its descriptors through /proc/1/fd. What a function writes arrives as the payload of 'O' and 'E'
 * frames, byte for byte, and can never pass for an exit. Once the runner is connected the worker
 * removes the socket's file, so nothing else in the container can connect to the worker.
 *
 * The next call's process is started as soon as the runner is free (at connection, and after each
 * call that is not the last), blocked reading its stdin until the call's input comes: a call does
 * not wait for the function's own start. Its stdout and stderr are read only once its call began.
 *
 * Static C with no dependency but libc, so one binary runs in FROM scratch, musl and glibc images.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define HELLO "amp-runner/1"
#define READ_SIZE 65536
/* Largest frame the worker may send; its input chunks are 64 KiB. */
#define MAX_IN_FRAME (1024 * 1024)
/* Input held for the function beyond what its stdin pipe took: above it, the socket is not read. */
#define MAX_PENDING_INPUT (1024 * 1024)

static int sock = -1;
static sigset_t old_mask;
static int sig_fd = -1;

static int write_all(int fd, struct iovec *v, int count) {
  int at = 0;
  while (at < count) {
    ssize_t n = writev(fd, v + at, count - at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    while (at < count && (size_t)n >= v[at].iov_len) n -= (ssize_t)v[at++].iov_len;
    if (at < count) {
      v[at].iov_base = (char *)v[at].iov_base + n;
      v[at].iov_len -= (size_t)n;
    }
  }
  return 0;
}

static int send_frame(char type, const void *data, uint32_t len) {
  unsigned char head[5] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
  struct iovec v[2] = {{head, 5}, {(void *)data, len}};
  return write_all(sock, v, len > 0 ? 2 : 1);
}

/*
 * Kills every other process of the container. Only as PID 1, where kill(-1) reaches just the
 * container's own processes: run by hand outside a container it would reach far more.
 */
static void kill_all(void) {
  if (getpid() != 1) return;
  if (kill(-1, SIGKILL) == 0)
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {}
}

/* The runner cannot go on: says why (on the socket when it can, else on the container's stderr), and ends the container. */
static void die(const char *what) {
  char why[256];
  snprintf(why, sizeof why, "amp-runner: %s: %s", what, strerror(errno));
  if (sock < 0 || send_frame('F', why, (uint32_t)strlen(why)) < 0) dprintf(2, "%s\n", why);
  kill_all();
  _exit(125);
}

/*
 * Frames wait here and go in one write at the end of each round of the loop (or once 256 KiB are
 * waiting): a small call's output and its exit reach the worker together, one wakeup, one syscall.
 */
static unsigned char *out_buf;
static size_t out_len;
static size_t out_cap;
#define OUT_FLUSH (256 * 1024)

static void flush_out(void) {
  if (out_len == 0) return;
  struct iovec v = {out_buf, out_len};
  /* The worker is gone: nothing can be reported any more, and nothing of the container should live on. */
  if (write_all(sock, &v, 1) < 0) {
    kill_all();
    _exit(125);
  }
  out_len = 0;
}

static void frame(char type, const void *data, uint32_t len) {
  if (out_len + 5 + len > out_cap) {
    size_t want = out_cap ? out_cap : 65536;
    while (want < out_len + 5 + len) want *= 2;
    unsigned char *grown = realloc(out_buf, want);
    if (!grown) die("realloc");
    out_buf = grown;
    out_cap = want;
  }
  unsigned char *at = out_buf + out_len;
  at[0] = (unsigned char)type;
  at[1] = (unsigned char)(len >> 24);
  at[2] = (unsigned char)(len >> 16);
  at[3] = (unsigned char)(len >> 8);
  at[4] = (unsigned char)len;
  if (len > 0) memcpy(at + 5, data, len);
  out_len += 5 + len;
  if (out_len >= OUT_FLUSH) flush_out();
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* The signals a container's PID 1 gets from docker or the kernel that the function should get instead. */
static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};

static void setup_signals(void) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++) sigaddset(&mask, FORWARDED[i]);
  if (sigprocmask(SIG_BLOCK, &mask, &old_mask) < 0) die("sigprocmask");
  sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sig_fd < 0) die("signalfd");
  /* A function that exits without reading its input must not kill the runner with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
}

/* The process of the next (or current) call. */
static struct {
  pid_t pid;    /* 0: none started */
  int in;       /* write end of its stdin; -1 once closed */
  int out, err; /* read ends of its stdout and stderr; -1 at end of file */
  int done;     /* reaped, with status */
  int status;
  int failed;   /* exec failed: why[] says why */
  char why[512];
} fn = {0, -1, -1, -1, 0, 0, 0, ""};

/* A call is under way ('S' came, no 'X' sent yet), and whether more calls follow it. */
static int active;
static int more;
/* Input for the function not yet taken by its stdin pipe, and whether 'C' came. */
static unsigned char *pending;
static size_t pending_len;
static size_t pending_cap;
static int input_closed;

extern char **environ;

/*
 * Starts the next call's process: stdin, stdout and stderr are pipes; an exec failure is noted for
 * its call. posix_spawnp (vfork semantics) rather than fork: copying the runner's page tables
 * would cost as much again as the exec.
 */
static void prefork(char **argv) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) die("pipe");
  posix_spawn_file_actions_t files;
  posix_spawnattr_t attr;
  sigset_t dfl;
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  if (posix_spawn_file_actions_init(&files) || posix_spawnattr_init(&attr)) die("posix_spawn");
  posix_spawn_file_actions_adddup2(&files, in[0], 0);
  posix_spawn_file_actions_adddup2(&files, out[1], 1);
  posix_spawn_file_actions_adddup2(&files, err[1], 2);
  /* The function gets the signal mask and SIGPIPE the runner itself was started with. */
  posix_spawnattr_setsigmask(&attr, &old_mask);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int e = posix_spawnp(&pid, argv[0], &files, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  fn.pid = e ? -1 : pid;
  fn.in = in[1];
  fn.out = out[0];
  fn.err = err[0];
  fn.done = 0;
  fn.failed = e != 0;
  if (fn.failed) {
    snprintf(fn.why, sizeof fn.why, "exec %s: %s", argv[0], strerror(e));
  }
  set_nonblock(fn.in);
  set_nonblock(fn.out);
  set_nonblock(fn.err);
}

/* Reads what one pipe holds now into frames; closes it at end of file. */
static void pump(int *fd, char type) {
  static char buf[READ_SIZE];
  while (*fd >= 0) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) {
      frame(type, buf, (uint32_t)n);
      if (n < (ssize_t)sizeof buf) return;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;
    } else {
      close(*fd);
      *fd = -1;
    }
  }
}

/* Reaps every child that exited (orphans too: the runner is PID 1) and notes the function's status. */
static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    if (pid == fn.pid) {
      fn.done = 1;
      fn.status = status;
    }
  }
}

/* Pending signals: SIGCHLD reaps; the others go to the function, or end a runner with no call. Returns such a signal. */
static int on_signals(void) {
  struct signalfd_siginfo info;
  int stop = 0;
  while (read(sig_fd, &info, sizeof info) == (ssize_t)sizeof info) {
    int sig = (int)info.ssi_signo;
    if (sig == SIGCHLD) continue;
    if (active && fn.pid > 0 && !fn.done) kill(fn.pid, sig);
    else if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) stop = sig;
  }
  reap();
  return stop;
}

static void flush_input(void) {
  while (fn.in >= 0 && pending_len > 0) {
    ssize_t n = write(fn.in, pending, pending_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) {
      /* EPIPE: the function stopped reading; the rest of its input is dropped, as docker does. */
      pending_len = 0;
      close(fn.in);
      fn.in = -1;
      return;
    }
    memmove(pending, pending + n, pending_len - (size_t)n);
    pending_len -= (size_t)n;
  }
  if (fn.in >= 0 && pending_len == 0 && input_closed) {
    close(fn.in);
    fn.in = -1;
  }
}

static void add_input(const unsigned char *data, size_t n) {
  if (pending_len + n > pending_cap) {
    size_t want = pending_cap ? pending_cap : 65536;
    while (want < pending_len + n) want *= 2;
    unsigned char *grown = realloc(pending, want);
    if (!grown) die("realloc");
    pending = grown;
    pending_cap = want;
  }
  memcpy(pending + pending_len, data, n);
  pending_len += n;
  flush_input();
}

/* Ends the call: its exit frame, then every process it left is killed, so the next call starts with none. */
static void end_call(char **argv) {
  if (fn.failed) {
    frame('F', fn.why, (uint32_t)strlen(fn.why));
  } else {
    /* Once the function exited, what its pipes hold now is its output (later writers are orphans). */
    pump(&fn.out, 'O');
    pump(&fn.err, 'E');
    unsigned char x[2];
    if (WIFSIGNALED(fn.status)) {
      x[0] = 's';
      x[1] = (unsigned char)WTERMSIG(fn.status);
    } else {
      x[0] = 'e';
      x[1] = (unsigned char)WEXITSTATUS(fn.status);
    }
    frame('X', x, 2);
  }
  /* The answer goes now: the cleanup and the next process's start below take a while. */
  flush_out();
  if (fn.in >= 0) close(fn.in);
  if (fn.out >= 0) close(fn.out);
  if (fn.err >= 0) close(fn.err);
  fn.pid = 0;
  fn.in = fn.out = fn.err = -1;
  active = 0;
  pending_len = 0;
  input_closed = 0;
  kill_all();
  reap();
  if (more) prefork(argv);
}

static void on_frame(char **argv, unsigned char type, const unsigned char *data, uint32_t len) {
  if (type == 'S') {
    if (active || len != 1) {
      errno = EPROTO;
      die("a call started while one runs");
    }
    if (fn.pid == 0) prefork(argv);
    active = 1;
    more = data[0] == 1;
    input_closed = 0;
    pending_len = 0;
  } else if (type == 'I') {
    /* Input of a call that already ended (its function exited without reading it all) is dropped. */
    if (active) add_input(data, len);
  } else if (type == 'C') {
    if (active) {
      input_closed = 1;
      flush_input();
    }
  } else {
    errno = EPROTO;
    die("unknown frame from the worker");
  }
}

static int serve(const char *path, char **argv) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    die("socket path");
  }
  strcpy(addr.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
  sock = s;
  frame('H', HELLO, (uint32_t)strlen(HELLO));
  flush_out();
  more = 1;
  prefork(argv);
  static unsigned char buf[READ_SIZE];
  unsigned char *frames = NULL;
  size_t frames_len = 0, frames_cap = 0;
  for (;;) {
    flush_out();
    int calling = active && !fn.failed;
    struct pollfd p[5] = {
        {sig_fd, POLLIN, 0},
        {pending_len < MAX_PENDING_INPUT ? sock : -1, POLLIN, 0},
        {calling ? fn.out : -1, POLLIN, 0},
        {calling ? fn.err : -1, POLLIN, 0},
        {calling && pending_len > 0 ? fn.in : -1, POLLOUT, 0},
    };
    if (poll(p, 5, -1) < 0 && errno != EINTR) die("poll");
    if (p[2].revents) pump(&fn.out, 'O');
    if (p[3].revents) pump(&fn.err, 'E');
    if (p[4].revents) flush_input();
    if (p[0].revents) {
      int stop = on_signals();
      if (stop && !active) {
        kill_all();
        return 128 + stop;
      }
    }
    if (active && (fn.done || fn.failed)) end_call(argv);
    if (p[1].revents) {
      ssize_t n = read(sock, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        /* The worker closed the socket (the container's last call is over) or is gone. */
        kill_all();
        return 0;
      }
      if (n < 0) continue;
      if (frames_len + (size_t)n > frames_cap) {
        size_t want = frames_cap ? frames_cap : 65536;
        while (want < frames_len + (size_t)n) want *= 2;
        unsigned char *grown = realloc(frames, want);
        if (!grown) die("realloc");
        frames = grown;
        frames_cap = want;
      }
      memcpy(frames + frames_len, buf, (size_t)n);
      frames_len += (size_t)n;
      size_t at = 0;
      while (frames_len - at >= 5) {
        uint32_t len = (uint32_t)frames[at + 1] << 24 | (uint32_t)frames[at + 2] << 16 | (uint32_t)frames[at + 3] << 8 | frames[at + 4];
        if (len > MAX_IN_FRAME) {
          errno = EMSGSIZE;
          die("frame from the worker");
        }
        if (frames_len - at < 5 + (size_t)len) break;
        on_frame(argv, frames[at], frames + at + 5, len);
        at += 5 + len;
      }
      memmove(frames, frames + at, frames_len - at);
      frames_len -= at;
      /* A call whose process had already exited (or failed to start) ends as soon as it begins. */
      if (active && (fn.done || fn.failed)) end_call(argv);
    }
  }
}

int main(int argc, char **argv) {
  /* Not dumpable: the function's processes cannot open the runner's descriptors in /proc/1/fd. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (argc >= 4 && strcmp(argv[1], "serve") == 0) {
    setup_signals();
    return serve(argv[2], argv + 3);
  }
  dprintf(2, "usage: amp-runner serve SOCKET CMD [ARG...]\n");
  return 125;
}
