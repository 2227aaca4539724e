from seqapps.apps.forecasting import main

main()
