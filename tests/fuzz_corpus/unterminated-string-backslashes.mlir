builtin.module attributes {a = "\\\\\\\\\\\\\\\\\\\\\\\\\\\\}
