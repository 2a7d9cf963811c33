"""One command from a pipeline config to the paper's tables and figures.

``mim run bmaiu_plugin pipeline PIPELINE_CONFIG`` (``tools/pipeline.py``) expands the config into
steps (:func:`expand`), runs each as its own process (:class:`PipelineRunner`, resumable), and
writes ``results.csv`` / ``results.md`` (:func:`write_reports`) and PNG figures
(:func:`make_figures`).  See ``docs/pipeline.md``.
"""
from .figures import (encode_clean_triggered, make_figures, plot_heatmap, plot_sweep,
                      plot_tsne)
from .report import collect_runs, csv_rows, results_markdown, write_csv, write_reports
from .runner import (PipelineRunner, Step, StepResult, expand, flatten_options, is_done,
                     options_to_args, select)

__all__ = ['expand', 'select', 'Step', 'StepResult', 'PipelineRunner', 'is_done',
           'flatten_options', 'options_to_args', 'collect_runs', 'csv_rows', 'write_csv',
           'results_markdown', 'write_reports', 'make_figures', 'encode_clean_triggered',
           'plot_tsne', 'plot_sweep', 'plot_heatmap']
