"""Result JSON, terminal tables and PNG figures."""
