"""Tissue volumes per age/year as a table node and a line plot of it."""

import vtk

# Plot colours per column, so ventricles are always the same colour across results.
SERIES_COLOURS = [(0.47, 0.78, 1.0), (0.16, 0.35, 0.78), (0.9, 0.59, 0.31), (0.55, 0.55, 0.5), (0.8, 0.2, 0.2)]


def volumes_table(scene, rows, index_name, name):
    """``rows``: [{index_name: 70, "ventricles_ml": 25.1, ...}, ...] -> a table node, one row each."""
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    columns = [index_name] + sorted({k for row in rows for k in row if k != index_name})
    vtk_table = table.GetTable()
    for column in columns:
        array = vtk.vtkDoubleArray()
        array.SetName(column)
        vtk_table.AddColumn(array)
    fill_rows(vtk_table, rows)
    for column in columns:
        table.SetColumnUnitLabel(column, "years" if column == index_name else "mL")
    table.Modified()
    return table


def fill_rows(vtk_table, rows):
    """Put ``rows`` into the table's columns (a value a row lacks is NaN), replacing its rows."""
    columns = [vtk_table.GetColumnName(c) for c in range(vtk_table.GetNumberOfColumns())]
    vtk_table.SetNumberOfRows(len(rows))
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            vtk_table.SetValue(r, c, vtk.vtkVariant(float(row.get(column, float("nan")))))


def volumes_plot(scene, table, index_name, name):
    """A line chart of every volume column of ``table`` against the index column."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(name))
    chart.SetTitle(name)
    chart.SetXAxisTitle(f"{index_name} (years)")
    chart.SetYAxisTitle("volume (mL)")
    vtk_table = table.GetTable()
    series_nodes = []
    for c in range(vtk_table.GetNumberOfColumns()):
        column = vtk_table.GetColumnName(c)
        if column == index_name:
            continue
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{name} {column}"))
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(index_name)
        series.SetYColumnName(column)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        series.SetColor(*SERIES_COLOURS[len(series_nodes) % len(SERIES_COLOURS)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
        series_nodes.append(series)
    return chart, series_nodes
