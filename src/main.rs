fn main() -> std::process::ExitCode {
    emvae_cli::main()
}
