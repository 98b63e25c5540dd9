"""The reference PHP: real ``parse_str`` over many query strings in one ``php`` process.

Each PHP array comes back canonical, so key types, order and bytes all compare exactly: a list
of ``[key, value]`` pairs, an int key as a JSON number, a string key as ``"s" + hex``, a string
value as its hex, an array value as a nested list of pairs. There is no skipping: without PHP the
tests fail and say to install Debian's ``php-cli``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from b24batch.testing.phpform import PhpArray

_SCRIPT = r"""
function canon($a) {
    $out = [];
    foreach ($a as $k => $v) {
        $out[] = [is_int($k) ? $k : "s" . bin2hex($k), is_array($v) ? canon($v) : bin2hex($v)];
    }
    return $out;
}
$queries = json_decode(stream_get_contents(STDIN));
$answers = [];
foreach ($queries as $q) {
    $r = [];
    parse_str(hex2bin($q), $r);
    $answers[] = canon($r);
}
echo json_encode($answers);
"""


def php_binary() -> str:
    """The ``php`` executable; fails loudly when it is missing."""
    found = shutil.which("php")
    assert found is not None, (
        "these tests compare with PHP's own parse_str and need the php command: "
        "install Debian's php-cli (apt-get install -y php-cli)"
    )
    return found


def php_parse(queries: Sequence[bytes], *, max_input_vars: int = 1_000_000) -> list[Any]:
    """PHP's ``parse_str`` of each query, canonical, from one ``php -r`` run (``max_input_vars``
    as given: by default high enough to keep every variable; PHP's own default is 1000)."""
    completed = subprocess.run(
        [
            php_binary(),
            "-d",
            f"max_input_vars={max_input_vars}",
            "-d",
            "error_reporting=0",
            "-r",
            _SCRIPT,
        ],
        input=json.dumps([query.hex() for query in queries]).encode("ascii"),
        capture_output=True,
        timeout=60,
        check=True,
    )
    answers = json.loads(completed.stdout)
    assert isinstance(answers, list)
    return answers


def canon(array: PhpArray) -> list[Any]:
    """A Python PHP array in the canonical form the script prints."""
    return [
        [
            key if isinstance(key, int) else "s" + key.hex(),
            canon(value) if isinstance(value, dict) else value.hex(),
        ]
        for key, value in array.items()
    ]


def leaves(array: list[Any]) -> int:
    """How many leaf values a canonical PHP array holds (each one form variable)."""
    return sum(leaves(value) if isinstance(value, list) else 1 for _, value in array)
