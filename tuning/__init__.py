"""KerasTuner search spaces for the apps (`tuning.hypermodels`) and the `tune` command
(`python -m tuning <app>`, or `seqapps tune <app>`)."""
