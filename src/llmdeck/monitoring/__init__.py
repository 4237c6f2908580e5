"""Monitoring: metrics over traces, dashboard data, feedback, alerts, drift and retention."""
