from seqapps.apps.translation import main

main()
