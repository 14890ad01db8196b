"""The collectives of a compiled XLA program, read from its HLO text.

Knows the HLO text format only: computations, instructions and array
types (`bf16[100,512]{1,0}`), nothing of models or of JAX.
"""

import dataclasses
import math
import re
from typing import Dict, List, Set

KINDS = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')

_ITEMSIZE = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
             'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8, 'c64': 8, 'c128': 16}
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.-]+) .*\{\s*$')
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?[\w.-]+ = (.*?) (' + '|'.join(KINDS) +
                          r')(?:-start)?\(')
_ARRAY = re.compile(r'\b(' + '|'.join(_ITEMSIZE) + r')\[([\d,]*)\]')
_CALLED = re.compile(r'(?:calls|body|condition|to_apply|branch_computations)=\{?%([\w.-]+)')
_LOOP_BODY = re.compile(r'\bbody=%([\w.-]+)')


@dataclasses.dataclass
class Collective:
  """The instructions of one collective kind.

  Attributes:
    count: instructions in the program text.
    bytes: summed over them, the bytes of each one's largest result array (an
      all-gather's gathered array, a reduce-scatter's shard).
    in_loops: how many of them sit in a loop body (a scanned layer), which runs
      once per iteration.
  """
  count: int = 0
  bytes: int = 0
  in_loops: int = 0


def _computations(text: str) -> Dict[str, List[str]]:
  """Computation name -> its instruction lines."""
  computations, current = {}, None
  for line in text.splitlines():
    header = _COMPUTATION.match(line)
    if header and not line.startswith(' '):
      current = computations.setdefault(header.group(1), [])
    elif current is not None and line.startswith(' '):
      current.append(line)
  return computations


def _in_loops(computations: Dict[str, List[str]]) -> Set[str]:
  """The computations that run inside a while loop: the bodies and what they call."""
  reached = {name for lines in computations.values() for line in lines
             for name in _LOOP_BODY.findall(line)}
  frontier = list(reached)
  while frontier:
    for name in _CALLED.findall('\n'.join(computations.get(frontier.pop(), ()))):
      if name not in reached:
        reached.add(name)
        frontier.append(name)
  return reached


def _largest_array_bytes(type_text: str) -> int:
  sizes = [math.prod(int(d) for d in dims.split(',') if d) * _ITEMSIZE[dtype]
           for dtype, dims in _ARRAY.findall(type_text)]
  return max(sizes, default=0)


def collectives(text: str) -> Dict[str, Collective]:
  """Each collective kind found in an HLO module's text (asynchronous ones by their -start)."""
  computations = _computations(text)
  looped = _in_loops(computations)
  found: Dict[str, Collective] = {}
  for name, lines in computations.items():
    for line in lines:
      match = _INSTRUCTION.match(line)
      if not match:
        continue
      result_type, kind = match.groups()
      entry = found.setdefault(kind, Collective())
      entry.count += 1
      entry.bytes += _largest_array_bytes(result_type)
      entry.in_loops += name in looped
  return found
