"""devkit."""
