// passes: ham-degree{foo=1}
builtin.module {
}
