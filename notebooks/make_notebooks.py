"""Source of the four notebooks: edit here, then run ``python notebooks/make_notebooks.py``.

The notebooks are written without outputs, execution counts or widget state (running the script also
strips a notebook saved from JupyterLab); ``tests/test_notebooks.py`` checks they match this file and runs
each one top to bottom on the synthetic sample data.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

ON_QMT = """**On the QMT machine.** Start the QMT client in 极简模式 (miniQMT) and log in, copy
`docs/live.example.toml` to `config.toml` (account id, `qmt_userdata_path`, `data_dir = "data"`), and run paper
on live QMT quotes first (`simulation = true`), then `simulation = false` for real orders (the README's
"Going live" section walks through it). The engine comes from the config through the one factory, which picks
the broker from the settings:

```python
from miniqmt_lab import config
from miniqmt_lab.factory import build_engine

settings = config.load("config.toml")
engine = build_engine(settings)  # paper on live QMT quotes while simulation = true; LIVE once it is false
```"""

SAMPLE_NOTE = (
    "The bars here are **synthetic** (`miniqmt_lab.bars.sample_bars`): real-looking codes, random prices. "
    "Databases go to a temporary folder that is removed when the kernel shuts down (Kernel → Shut Down or "
    "Restart), so the notebook leaves nothing behind."
)



def at_shutdown(what: str) -> str:
    """The line that closes ``what`` when the kernel shuts down, before the temporary folder is removed."""
    return f"atexit.register({what})  # at kernel shutdown this runs first, then the temporary folder goes\n"


def quickstart() -> list:
    return [
        new_markdown_cell(
            "# Quickstart: a paper engine on sample data\n\n"
            "The live engine (its threads, rule kernel, paper broker and SQLite book) replays a few months of "
            "daily bars in seconds, with auto trading on, so you can see what it does before it touches money.\n\n"
            + SAMPLE_NOTE
        ),
        new_code_cell(
            "import atexit\n"
            "import tempfile\n\n"
            "from miniqmt_lab.bars import default_store\n"
            "from miniqmt_lab.config import Settings\n"
            "from miniqmt_lab.factory import build_engine\n"
            "from miniqmt_lab.widgets import EngineControlPanel\n\n"
            'work = tempfile.TemporaryDirectory(prefix="miniqmt-quickstart-", ignore_cleanup_errors=True)\n'
            "settings = Settings().with_values(data_dir=work.name, auto_trading=True)\n"
            "store = default_store(settings.data_path)  # an empty store is filled with the synthetic sample\n"
            'bars = store.query(store.codes()[:8], start="2023-03-01", end="2023-08-31")\n'
            "store.close()\n"
            'print(settings.engine.simulation, settings.database_path, len(bars), "bars")'
        ),
        new_markdown_cell(
            "Replay those bars through the engine, built by the one factory every notebook, script and server "
            "uses: the replay clock runs as fast as the engine can go."
        ),
        new_code_cell(
            "engine = build_engine(settings, replay=bars)\n"
            + at_shutdown("engine.stop")
            + "engine.start()\n"
            "engine.wait_idle(60)"
        ),
        new_code_cell(
            'engine.positions()[["stock_code", "volume", "available", "cost", "price", "profit_ratio", "tp_done",\n'
            '                    "dynamic_exit_level", "next_grid_price"]]'
        ),
        new_code_cell('engine.trades().groupby("rule").size()'),
        new_markdown_cell(
            "The control panel shows the same engine: mode, the database it writes, the trading state (the kill "
            "switch: active, reducing or halted), threads, broker, positions, trades, every signal and what "
            "became of it, and a manual order form. Its tables page and filter: type `stop_loss` or a stock code "
            "into a table's filter box."
        ),
        new_code_cell("panel = EngineControlPanel(engine)\npanel"),
        new_code_cell("engine.stop()"),
        new_markdown_cell(ON_QMT),
    ]


def backtest_tuning() -> list:
    return [
        new_markdown_cell(
            "# Backtest tuning\n\n"
            "Move the rule sliders, run a backtest of the very rule kernel the engine runs, sweep two parameters "
            "into a heatmap (click a cell to take its values), then write the chosen values to the config file "
            "the engine loads.\n\n" + SAMPLE_NOTE
        ),
        new_code_cell(
            "import tempfile\n"
            "from pathlib import Path\n\n"
            "from miniqmt_lab.bars import sample_bars\n"
            "from miniqmt_lab.widgets import BacktestTuningPanel\n\n"
            'work = tempfile.TemporaryDirectory(prefix="miniqmt-tuning-", ignore_cleanup_errors=True)\n'
            "bars = sample_bars(n_stocks=10, n_days=250)\n"
            'panel = BacktestTuningPanel(bars, config_path=Path(work.name) / "config.toml")\n'
            "panel"
        ),
        new_markdown_cell(
            "The buttons run on a worker thread; from code, each action returns a future to wait on."
        ),
        new_code_cell("result = panel.run().result()\nresult.summary"),
        new_code_cell(
            'panel.sweep_x.value, panel.sweep_y.value = "stop_loss_ratio", "initial_take_profit_ratio"\n'
            "sweep = panel.run_sweep().result()\n"
            'sweep.table.sort_values("total_return", ascending=False).head()'
        ),
        new_code_cell(
            "panel.use_best()\n"
            "panel.apply_to_config()\n"
            'print((Path(work.name) / "config.toml").read_text())'
        ),
        new_markdown_cell(
            "**On the QMT machine.** Tune on your own history instead of the sample: fill the bar store "
            "(`miniqmt_lab.bars.BarStore`, e.g. `data/bars.duckdb`) from QMT's history or from CSV/Parquet files, "
            "then `bars = store.query(codes, start, end)`. Point `config_path` at the `config.toml` your engine "
            "loads; \"Apply to engine config\" rewrites only the rule keys and keeps the rest, comments included, "
            "and a running engine uses them after a restart."
        ),
    ]


def live_control() -> list:
    return [
        new_markdown_cell(
            "# Live control\n\n"
            "The control panel of one engine. Here it is a **paper** engine replaying synthetic bars with auto "
            "trading on: press **Start** and watch positions open, trades and signals fill in, and the threads "
            "beat; switch **Trading** to *halted* (the kill switch: no order goes out) or *reducing* (sells "
            "only) and back; press **Stop** to end the session and **Start** to run the same engine again (it "
            "restores its book from the database and goes on where it stopped).\n\n" + SAMPLE_NOTE
        ),
        new_code_cell(
            "import atexit\n"
            "import tempfile\n\n"
            "from miniqmt_lab.bars import sample_bars\n"
            "from miniqmt_lab.config import Settings\n"
            "from miniqmt_lab.factory import build_engine\n"
            "from miniqmt_lab.widgets import EngineControlPanel\n\n"
            'work = tempfile.TemporaryDirectory(prefix="miniqmt-live-", ignore_cleanup_errors=True)\n'
            "settings = Settings().with_values(data_dir=work.name, auto_trading=True)\n"
            "bars = sample_bars(n_stocks=8, n_days=160)\n"
            "# pace: 20 ms per tick round, so a session of 160 days takes about 13 s to watch\n"
            "engine = build_engine(settings, replay=bars, pace=0.02)\n"
            + at_shutdown("engine.stop").rstrip("\n")
        ),
        new_code_cell("panel = EngineControlPanel(engine)\npanel"),
        new_markdown_cell(
            "The buttons call the engine's methods on a worker thread; the same from code:\n\n"
            "```python\n"
            "engine.start()\n"
            "engine.set_auto_trading(False)          # signals are still detected and recorded, not executed\n"
            'engine.set_trading_state("halted", "lunch")  # the kill switch: every order is refused\n'
            'engine.buy("600000.SH", 100)            # manual orders raise typed errors (miniqmt_lab.errors)\n'
            "engine.stop()\n"
            "```\n\n"
            "The panel reads `engine.version` twice a second and redraws only when it moved; a slow browser "
            "never slows the engine."
        ),
        new_markdown_cell(
            "## Attach to a served engine\n\n"
            "An engine inside a notebook kernel stops with the kernel. For unattended trading run it as a local "
            "service and attach the same panel from any notebook; restarting the notebook's kernel then leaves "
            "the served engine trading:\n\n"
            "```\n"
            "miniqmt-lab serve --demo                # a paper engine replaying the sample bars, to try it\n"
            "miniqmt-lab serve --config config.toml  # your engine, built by the same factory\n"
            "```\n\n"
            "The server prints `http://127.0.0.1:8765/?token=...` (the token is also kept in "
            "`<data_dir>/server.token`). Then:\n\n"
            "```python\n"
            "from miniqmt_lab.service import EngineClient\n"
            "from miniqmt_lab.widgets import EngineControlPanel\n\n"
            'client = EngineClient.from_url("http://127.0.0.1:8765/?token=...")  # the URL the server printed\n'
            "EngineControlPanel(client)\n"
            "```\n\n"
            "On a LIVE served engine the server takes a call that lets orders out only when it says "
            '`"confirm": true`: build the client with `EngineClient(url, token, confirm_live=True)` and the '
            "panel's own second click is that confirmation.\n\n"
            "*This is text, not a cell that runs: it needs a server running, and the tests run this notebook "
            "without one.* The panel works the same on both, as it uses only what an engine and a client share "
            "(`miniqmt_lab.protocols.EngineFace`)."
        ),
        new_markdown_cell(
            ON_QMT
            + "\n\nWith `simulation = false` the panel shows a red **LIVE** banner, and every step that lets real "
            "orders out asks for a second, explicit confirmation: switching auto trading on, Start while auto "
            "trading is on, switching trading from halted or reducing back towards active, and each manual order "
            "(the box repeats side, code, volume, price and the masked account). Halting acts at once."
        ),
    ]


def signal_replay() -> list:
    return [
        new_markdown_cell(
            "# Signal replay\n\n"
            "Step through a recorded session one bar at a time: the price with every trade marked by the rule "
            "that made it (and every signal that was not executed), the position the engine held at the cursor, "
            "and the same ticks traded again with other parameters, trade by trade beside the recording.\n\n"
            "Here the session is recorded first: a paper engine replays synthetic bars with auto trading on. "
            + SAMPLE_NOTE
        ),
        new_code_cell(
            "import atexit\n"
            "import tempfile\n\n"
            "from miniqmt_lab.bars import default_store\n"
            "from miniqmt_lab.config import Settings\n"
            "from miniqmt_lab.factory import build_engine\n"
            "from miniqmt_lab.widgets import SignalReplayPanel, recorded_sessions\n"
            "from miniqmt_lab.widgets.replay import compare_trades\n\n"
            'work = tempfile.TemporaryDirectory(prefix="miniqmt-replay-", ignore_cleanup_errors=True)\n'
            "settings = Settings().with_values(data_dir=work.name, auto_trading=True)\n"
            "store = default_store(settings.data_path)\n"
            + at_shutdown("store.close")
            + 'bars = store.query(store.codes()[:6], start="2023-03-01", end="2023-09-29")\n'
            "engine = build_engine(settings, replay=bars)\n"
            "engine.start()\n"
            "engine.wait_idle(60)\n"
            "engine.stop()  # the journal of ticks is complete once the engine stopped"
        ),
        new_markdown_cell(
            "Every session an engine runs is recorded under `data_dir`: its ticks in `journal/`, its trades and "
            "signals in `paper.sqlite` (or `live.sqlite`). `recorded_sessions` lists the latest. The panel also "
            "backtests stored bars of any stock and date range (\"Load bars\")."
        ),
        new_code_cell(
            "panel = SignalReplayPanel(recorded_sessions(settings), store=store, settings=settings)\n"
            "panel"
        ),
        new_markdown_cell(
            "Drive it from code as well: move the cursor to the next trade, then rerun with a tighter stop loss "
            "and compare."
        ),
        new_code_cell(
            "panel.next_trade()\n"
            "panel.state.path.iloc[panel.state.cursor]"
        ),
        new_code_cell(
            'panel.form.sliders["stop_loss_ratio"].value = -0.04\n'
            "panel.rerun().result()\n"
            "compare_trades(panel.state.trades, panel.state.rerun_trades)"
        ),
        new_markdown_cell(
            ON_QMT
            + "\n\nA live session is recorded the same way (`live.sqlite` and `journal/live-*.sqlite`), so "
            "`recorded_sessions(settings)` replays yesterday's real trading; stored bars come from "
            "`QmtFeed(settings).download_history(...)` into the bar store."
        ),
    ]


NOTEBOOKS = {
    "00_quickstart.ipynb": quickstart,
    "01_backtest_tuning.ipynb": backtest_tuning,
    "02_live_control.ipynb": live_control,
    "03_signal_replay.ipynb": signal_replay,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(name).stem}-{i:02d}"  # stable ids: regenerating gives identical files
    return nb


def main() -> None:
    for name in NOTEBOOKS:
        nbformat.write(build(name), HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
