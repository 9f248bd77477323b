"""An import-linter contract for layers that cut across packages.

import-linter's own `layers` contract takes whole packages, but here a domain package (`app.connect`) holds
both its rules (`service.py`) and the HTTP module that serves them (`pages.py`). This contract sorts every
module into a layer by patterns over module names — the most specific pattern wins — and refuses any direct
import from a lower layer into a higher one. Direct imports are enough: when every single import points down
or sideways, no chain of them can point up.

Options (`.importlinter`):
    layers:         `name: pattern pattern …`, highest first; `*` matches one name segment, `**` any number,
                    and a segment may end in a wildcard (`*_api`); a module matching no pattern is in the
                    layer marked `(rest)`.
    ignore_imports: `importer -> imported` pairs that are allowed anyway, each with its reason in a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck, InvalidContractOptions

REST = "(rest)"


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern[str]
    # Literal segments count more than wildcards, so `app.admin.**` beats `app.*.pages` for app.admin.x.pages.
    specificity: tuple[int, int]


def compile_pattern(text: str) -> Pattern:
    parts = []
    for segment in text.split("."):
        if segment == "**":
            parts.append(r"[\w.]+")
        else:
            parts.append(re.escape(segment).replace(r"\*", r"\w*"))
    literal = sum(1 for s in text.split(".") if "*" not in s)
    return Pattern(text, re.compile(r"\.".join(parts) + r"\Z"), (literal, len(text)))


class CrossPackageLayersContract(Contract):
    type_name = "cross_package_layers"

    layers = fields.ListField(subfield=fields.StringField())
    ignore_imports = fields.SetField(subfield=fields.StringField(), required=False)

    def validate(self) -> None:
        self._rank: dict[str, int] = {}
        self._patterns: list[tuple[Pattern, str]] = []
        self._rest: str | None = None
        for rank, line in enumerate(self.layers):  # type: ignore[arg-type]
            name, _, patterns = line.partition(":")
            name = name.strip()
            self._rank[name] = rank
            for text in patterns.split():
                if text == REST:
                    self._rest = name
                else:
                    self._patterns.append((compile_pattern(text), name))
        if self._rest is None:
            raise InvalidContractOptions({"layers": f"one layer must hold {REST}: the modules no pattern names"})
        self._ignored = {tuple(part.strip() for part in pair.split("->")) for pair in self.ignore_imports or ()}

    def layer_of(self, module: str) -> str:
        matches = [(pattern.specificity, layer) for pattern, layer in self._patterns if pattern.regex.match(module)]
        return max(matches)[1] if matches else self._rest  # type: ignore[return-value]

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        upward = []
        used_ignores = set()
        for importer in sorted(graph.modules):
            low = self.layer_of(importer)
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                high = self.layer_of(imported)
                if self._rank[high] >= self._rank[low]:
                    continue
                if (importer, imported) in self._ignored:
                    used_ignores.add((importer, imported))
                    continue
                lines = graph.get_import_details(importer=importer, imported=imported)
                upward.append((importer, low, imported, high, [d["line_number"] for d in lines]))
        stale = sorted(self._ignored - used_ignores)
        return ContractCheck(kept=not upward and not stale, metadata={"upward": upward, "stale": stale})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, low, imported, high, lines in check.metadata["upward"]:
            where = f" (line {', '.join(map(str, lines))})" if lines else ""
            output.print_error(f"{importer} ({low}) imports {imported} ({high}){where}", bold=False)
            output.new_line()
        for importer, imported in check.metadata["stale"]:
            output.print_error(f"ignored import no longer exists: {importer} -> {imported}", bold=False)
            output.new_line()
