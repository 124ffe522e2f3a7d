"""Rewrites the README's measured tables from the reports the programs wrote.

  python launch/readme_tables.py --demo=/tmp/metaiqa-demo/report.json \
      --transfer=/tmp/metaiqa-transfer/report.json \
      --adaptation=bench/results/adaptation.json --scores=/tmp/kodak_scores.csv

Each table sits between `<!-- BEGIN name -->` / `<!-- END name -->` lines of README.md and is
exactly what the program printed (`demo.summary_markdown`, `transfer.summary_markdown`,
`launch/adaptation.py`'s table), with the wall time and the machine the report records; the
quick start's example output is the head of the CSV `metaiqa-score` wrote for its command.
Numbers are never edited by hand.
"""

import csv
import json
import os
import pathlib

from absl import app, flags

from metaiqa_jax.train import demo, reporting, transfer

_DEMO = flags.DEFINE_string('demo', None, "metaiqa-demo's report.json.")
_TRANSFER = flags.DEFINE_string('transfer', None, "metaiqa-transfer's report.json.")
_ADAPTATION = flags.DEFINE_string('adaptation', None, "launch/adaptation.py's JSON.")
_SCORES = flags.DEFINE_string('scores', None, "The quick start's metaiqa-score CSV.")
_README = flags.DEFINE_string('readme', str(pathlib.Path(__file__).parent.parent / 'README.md'),
                              'The README to rewrite.')


def _section(report_path: str, summary_markdown) -> str:
  report = json.loads(pathlib.Path(report_path).read_text())
  minutes, seconds = divmod(round(report['wall_time_s']), 60)
  machine = report['machine']
  return (f'{summary_markdown(report)}\nWall time: {minutes} min {seconds} s on '
          f'{machine["cpu"]} ({machine["cores"]} cores, {machine["devices"]}, jax '
          f'{machine["jax"]}).\n')


def _adaptation_markdown(report: dict) -> str:
  """launch/adaptation.py's table with what its rows are."""
  return (f"Query SROCC before and after adaptation on k images of the type (mean ± 95% "
          f"t-interval over {report['draws']} draws of support and query photos; the last rows: "
          f"the mean over the types, its interval over types; {report['photos']} photos; "
          f"{report['defaults']['steps']} Adam steps at {report['defaults']['lr']:g}):\n\n"
          f"{report['table']}\n")


def _scores_section(csv_path: str, shown: int = 4) -> str:
  """The first `shown` rows of a metaiqa-score CSV, paths shortened to their file names."""
  with open(csv_path, newline='') as f:
    rows = list(csv.DictReader(f))
  lines = ['```', 'path,score'] + [f'.../{os.path.basename(r["path"])},{r["score"]}'
                                   for r in rows[:shown]]
  return '\n'.join(lines + [f'... ({len(rows)} rows)', '```'])


def main(argv):
  del argv
  readme = pathlib.Path(_README.value)
  text = readme.read_text()
  if _DEMO.value:
    text = reporting.replace_generated_section(text, 'demo-table',
                                               _section(_DEMO.value, demo.summary_markdown))
  if _TRANSFER.value:
    text = reporting.replace_generated_section(
        text, 'transfer-table', _section(_TRANSFER.value, transfer.summary_markdown))
  if _ADAPTATION.value:
    text = reporting.replace_generated_section(
        text, 'adaptation-table', _section(_ADAPTATION.value, _adaptation_markdown))
  if _SCORES.value:
    text = reporting.replace_generated_section(text, 'quickstart-scores',
                                               _scores_section(_SCORES.value))
  readme.write_text(text)


if __name__ == '__main__':
  app.run(main)
