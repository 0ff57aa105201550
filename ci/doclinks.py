#!/usr/bin/env python3
"""Checks that the project's docs stand on their own: every relative link in
a tracked Markdown or reStructuredText file names a file or directory of the
repository, and no text points outside it (../shared, the private spec).
Every reStructuredText file must also parse with docutils without a warning
(docs/dm-bow.rst is written for the kernel's admin-guide).
Prints one line per problem; exits 1 if there is any."""
import io
import os
import re
import subprocess
import sys

root = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip()
os.chdir(root)
files = subprocess.check_output(["git", "ls-files", "*.md", "*.rst"], text=True).split()
outside = re.compile(r"\.\./shared|\bspec §|\bspec \d")
mdlink = re.compile(r"\]\(([^)\s]+)\)")
problems = []
for f in files:
    with open(f, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if outside.search(line):
                problems.append(f"{f}:{n}: points outside the repository: {line.strip()}")
            for target in mdlink.findall(line):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue
                path = target.split("#", 1)[0]
                full = os.path.normpath(os.path.join(os.path.dirname(f), path))
                if full.startswith("..") or not os.path.exists(full):
                    problems.append(f"{f}:{n}: link to a file not in the repository: {target}")
import docutils.core  # noqa: E402 (python3-docutils, installed by ci/setup.sh)

for f in files:
    if not f.endswith(".rst"):
        continue
    with open(f, encoding="utf-8") as fh:
        src = fh.read()
    messages = io.StringIO()
    try:
        docutils.core.publish_string(
            src,
            source_path=f,
            writer_name="null",
            settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": messages},
        )
    except Exception as e:  # a parse that cannot go on
        messages.write(f"{f}: {e}\n")
    problems += [m for m in messages.getvalue().splitlines() if m.strip()]
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
