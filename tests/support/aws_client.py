"""The tests' `aws`: hands its stdin, stdout, stderr, arguments, environment and working
directory to the fork server (`aws_forkserver.py`) listening on SOCKET, and ends as the CLI's
command ended: its exit code, or its signal.

    python aws_client.py SOCKET ARGS...
"""

import array
import json
import os
import signal
import socket
import struct
import sys


def main():
    path, args = sys.argv[1], sys.argv[2:]
    # Arguments and variables that are not UTF-8 are Python's surrogate escapes, which JSON's
    # ASCII form carries as \udcXX and the server turns back into the same bytes.
    request = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode("ascii")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        fds = array.array("i", [0, 1, 2])
        conn.sendmsg([struct.pack("!Q", len(request))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        conn.sendall(request)
        answer = b""
        while len(answer) < 4:
            chunk = conn.recv(4 - len(answer))
            if not chunk:
                break
            answer += chunk
    except OSError as e:
        sys.stderr.write(f"aws (test fork server at {path}): {e}\n")
        return 255
    if len(answer) < 4:
        sys.stderr.write(f"aws (test fork server at {path}): the command ended without an exit status\n")
        return 255
    code = struct.unpack("!i", answer)[0]
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main())
