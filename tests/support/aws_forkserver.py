"""The real aws CLI, imported once and forked for each command (the tests' `aws`).

A run of the aws CLI spends most of its second importing botocore and its plugins: the
Elastic Beanstalk tests run it hundreds of times. This server imports the CLI once, then, for
each client (`aws_client.py`, which the tests' config names as `aws`), forks a process that
takes the client's stdin, stdout and stderr (passed over the socket), its arguments, its
environment and its working directory, and runs the CLI's own `main()` in it, as the `aws`
entry point does. The CLI's code, its argument parsing, its requests and its JSON are the
same; only the imports are shared, and what the CLI reads of its own package (the service
models and the list of services under its data directories, which a command otherwise parses
and walks again each time: more than half of a forked command's CPU). Each command builds its
own driver and session, so nothing one command reads (the environment, a config file, a
model directory of the user's) reaches the next.

    python aws_forkserver.py SOCKET

prints `ready` once it listens, and ends when its stdin closes (the test that started it has
ended, however it ended). A client that goes away (killed on a timeout or an interrupt) has
its command killed too.
"""

import array
import functools
import json
import os
import select
import signal
import socket
import struct
import sys

import awscli
import awscli.clidriver
import awscli.handlers  # noqa: F401  (the plugins the driver loads)
from botocore import hooks, loaders  # the CLI's own botocore (awscli/botocore), by this name

# The CLI's package (with its own botocore), as a prefix of the paths in it.
PACKAGE = os.path.dirname(os.path.abspath(awscli.__file__)) + os.sep

# The two things the CLI takes from the environment when it is imported rather than when it
# runs, done again for each command's environment (`run_cli`): awscli/__init__.py puts its own
# data after AWS_DATA_PATH's (`data_path`), and botocore names the user's model directory,
# ~/.aws/models, from HOME (`user_models`).
AWSCLI_DATA = os.path.join(PACKAGE, "data")

# What the CLI reads of its own package never changes while the server runs: the files are read
# once, here, and each command is forked with them. A read that involves anything outside the
# package (AWS_DATA_PATH set by a test, ~/.aws/models) is the CLI's own, every time.


def in_package(path):
    return os.path.abspath(path).startswith(PACKAGE)


def shared(read, key_of):
    """`read`, remembered for the calls whose key `key_of` gives (None: not remembered)."""
    known = {}

    @functools.wraps(read)
    def remembered(self, *args):
        key = key_of(self, *args)
        if key is None:
            return read(self, *args)
        if key not in known:
            known[key] = read(self, *args)
        return known[key]

    return remembered


def services_key(loader, type_name):
    paths = tuple(p for p in loader._potential_locations() if os.path.isdir(p))
    return (paths, type_name) if all(in_package(p) for p in paths) else None


_list_services = shared(loaders.Loader.list_available_services, services_key)
# A list the caller may change: each gets its own copy.
loaders.Loader.list_available_services = lambda self, type_name: list(_list_services(self, type_name))
loaders.JSONFileLoader.load_file = shared(
    loaders.JSONFileLoader.load_file, lambda _, path: os.path.abspath(path) if in_package(path) else None
)
# Whether a handler takes **kwargs, asked of each of the ~400 handlers every command registers.
hooks.accepts_kwargs = functools.lru_cache(maxsize=None)(hooks.accepts_kwargs)

# One driver built and thrown away: what the CLI imports lazily is imported here, once, and
# the models of the services the tests call are read.
_driver = awscli.clidriver.create_clidriver()
_driver._get_command_table()
for _service in ("elasticbeanstalk", "s3", "sts"):
    _driver.session.create_client(
        _service, region_name="us-east-1", aws_access_key_id="warm-up", aws_secret_access_key="warm-up"
    )
for _kind in ("paginators-1", "waiters-2"):
    _driver.session.get_component("data_loader").list_available_services(_kind)
del _driver

FDS = 3  # stdin, stdout, stderr


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("the client closed its connection")
        data += chunk
    return data


def data_path():
    """AWS_DATA_PATH as importing awscli leaves it: the given paths, expanded, then its own."""
    paths = []
    if "AWS_DATA_PATH" in os.environ:
        for path in os.environ["AWS_DATA_PATH"].split(os.pathsep):
            paths.append(os.path.expanduser(os.path.expandvars(path)))
    paths.append(AWSCLI_DATA)
    return os.pathsep.join(paths)


def user_models():
    """~/.aws/models as importing botocore names it (Loader.CUSTOMER_DATA_PATH)."""
    return os.path.join(os.path.expanduser("~"), ".aws", "models")


def run_cli(request):
    """In the command's process: become the client's `aws` and run the CLI. Never returns."""
    code = 255
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # As the aws entry point does before it imports the CLI.
        if os.environ.get("LC_CTYPE", "") == "UTF-8":
            os.environ["LC_CTYPE"] = "en_US.UTF-8"
        os.environ["AWS_DATA_PATH"] = data_path()
        loaders.Loader.CUSTOMER_DATA_PATH = user_models()
        sys.argv = ["aws"] + request["args"]
        code = awscli.clidriver.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    os._exit(code if isinstance(code, int) else 255)


def serve(conn):
    """In a process of its own per client: run its command and send back how it ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    size = struct.calcsize("!Q")
    msg, ancdata, _, _ = conn.recvmsg(size, socket.CMSG_SPACE(FDS * 4))
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(fds) != FDS:
        raise RuntimeError(f"expected {FDS} file descriptors, got {len(fds)}")
    if len(msg) < size:
        msg += read_exactly(conn, size - len(msg))
    request = json.loads(read_exactly(conn, struct.unpack("!Q", msg)[0]))
    pid = os.fork()
    if pid == 0:
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        run_cli(request)
    for fd in fds:
        os.close(fd)
    done = os.pidfd_open(pid)
    ready, _, _ = select.select([done, conn], [], [])
    if done not in ready:
        # The client is gone (killed): its command goes with it.
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    try:
        conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
    except OSError:
        pass


def main():
    path = sys.argv[1]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    # The per-client processes are reaped by the kernel.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([server, sys.stdin.fileno()], [], [])
        if sys.stdin.fileno() in ready:
            if not os.read(sys.stdin.fileno(), 1):
                return
            continue
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            code = 0
            try:
                serve(conn)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        conn.close()


if __name__ == "__main__":
    main()
