"""What people see: local times, tables, progress bars, notifications, terminal-safe text."""
