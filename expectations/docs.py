"""The GX project's one Data Docs site, readable offline, with nightrec's verdict on each run.

GX links Bootstrap, jQuery and Font Awesome from CDNs and draws the index table with JavaScript,
so offline its pages are unstyled and the index is empty. After each build the pages lose those
links, the index table is written out as HTML, and the styles come from
``plugins/custom_data_docs/styles/data_docs_custom_styles.css`` (GX inlines it in every page;
nightrec writes it from ``offline.css`` once, then it is the user's). GX marks a validation with
any failed expectation "Failed"; a run whose failures are all of ``warning`` severity is shown as
"Warnings", as nightrec judges it.
"""

import ast
import html
import json
import re
from pathlib import Path

import great_expectations

DOCS_SITE = "local_site"
SITE_DIR = "uncommitted/data_docs/local_site"
STYLES = "plugins/custom_data_docs/styles/data_docs_custom_styles.css"
_OFFLINE_CSS = Path(__file__).with_name("offline.css")
# What a new GX project holds in STYLES: empty rules, replaced by nightrec's stylesheet
_GX_TEMPLATE = (
    Path(great_expectations.__file__).parent / "render/view/static/styles/data_docs_custom_styles_template.css"
)
# A <script src> or <link href> that leaves the page's folder.
_REMOTE = re.compile(r"""<(script|link)\b[^>]*\b(src|href)=["']?(https?:)?//[^>]*>(\s*</script>)?""", re.I)
_TABLE = re.compile(
    r"\$\('#(?P<id>[^']+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*columns: (?P<columns>.*?),\s*"
    r"data: (?P<data>.*?),\s*toolbar:",
    re.S,
)
_FAILED = '<i class="fas fa-times text-danger" aria-hidden="true"></i> Failed'
_WARNINGS = '<i class="fas fa-exclamation-triangle text-warning" aria-hidden="true"></i> Warnings'


def configure_site(context) -> None:
    """One local site under ``uncommitted/data_docs/local_site`` and the offline stylesheet."""
    styles = Path(context.root_directory) / STYLES
    if not styles.exists() or styles.read_text() == _GX_TEMPLATE.read_text():  # never a user's own styles
        styles.parent.mkdir(parents=True, exist_ok=True)
        styles.write_text(_OFFLINE_CSS.read_text())
    site = (context.get_config().data_docs_sites or {}).get(DOCS_SITE) or {}
    if site.get("show_how_to_buttons") is False:
        return
    config = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": SITE_DIR},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    if site:
        context.update_data_docs_site(DOCS_SITE, config)
    else:
        context.add_data_docs_site(DOCS_SITE, config)


def site_index(gx_root: Path) -> Path:
    return Path(gx_root) / SITE_DIR / "index.html"


def verdict(result: dict) -> str:
    """``passed``, ``warnings`` (only warning/info expectations failed) or ``failed``, from a stored result."""
    failed = [r for r in result.get("results", []) if not r.get("success")]
    if not failed:
        return "passed"
    critical = any((r.get("expectation_config") or {}).get("severity", "critical") == "critical" for r in failed)
    return "failed" if critical else "warnings"


def _stored_result(gx_root: Path, page: Path) -> dict | None:
    site = Path(gx_root) / SITE_DIR
    stored = Path(gx_root) / "uncommitted" / (page.relative_to(site).with_suffix(".json"))
    return json.loads(stored.read_text()) if stored.is_file() else None


def _status_cell(verdict_: str) -> str:
    icon = {"passed": "fa-check-circle text-success", "warnings": "fa-exclamation-triangle text-warning"}
    text = {"passed": "Success", "warnings": "Warnings", "failed": "Failed"}[verdict_]
    return f'<i class="fas {icon.get(verdict_, "fa-times text-danger")}"></i> {text}'


def _static_table(page: str, gx_root: Path, site: Path) -> str:
    """The index's JavaScript-drawn tables as plain HTML rows."""
    for match in list(_TABLE.finditer(page)):
        columns, rows = ast.literal_eval(match["columns"]), ast.literal_eval(match["data"])
        head = "".join(f"<th>{html.escape(c['title'])}</th>" for c in columns)
        body = []
        for row in rows:
            link = row.get("_table_row_link_path")
            if "validation_success" in row and link:
                result = _stored_result(gx_root, site / link)
                row["validation_success"] = _status_cell(verdict(result) if result else "failed")
            cells = []
            for c in columns:
                value = str(row.get(c["field"], ""))
                if link and c["field"] in ("run_name", "expectation_suite_name"):
                    value = f'<a href="{html.escape(link)}">{value}</a>'
                cells.append(f"<td>{value}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        table = f'<table id="{match["id"]}" class="table table-sm table-bordered">'
        static = f"{table}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        page = re.sub(rf'<table\s+id="{re.escape(match["id"])}"[^>]*>\s*</table>', lambda _, s=static: s, page, count=1)
    return page


def make_offline(context) -> list[Path]:
    """Rewrite the site's pages GX has just (re)built; returns them."""
    gx_root = Path(context.root_directory)
    site = gx_root / SITE_DIR
    rewritten = []
    for path in sorted(site.rglob("*.html")):
        page = path.read_text()
        if not _REMOTE.search(page):
            continue  # rewritten after an earlier night
        page = _REMOTE.sub("", page)
        if path == site / "index.html":
            page = _static_table(page, gx_root, site)
        elif _FAILED in page and (result := _stored_result(gx_root, path)) and verdict(result) == "warnings":
            page = page.replace(_FAILED, _WARNINGS, 1)
        path.write_text(page)
        rewritten.append(path)
    return rewritten
