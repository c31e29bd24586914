from diffcodec_cli import main

main()
