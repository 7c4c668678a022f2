"""Scheduled LEE evaluation jobs and the results store they write to."""
