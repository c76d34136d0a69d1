"""The Kopf operator: reconciles DataPipeline children and reports stage results as status."""
