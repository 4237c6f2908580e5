"""Settings, database, ids, errors and the plug-in registry shared by every domain."""
