from seqapps.apps.sentiment import main

main()
